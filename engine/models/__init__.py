"""SQLModel tables, one module per concept; importing this package registers them all for Alembic."""

import engine.models.service  # noqa: F401  (ticket metrics)
from engine.models import customers, people  # noqa: F401  (each registers its own tables)
from engine.models.core import AuditEvent, DefinitionVersion, HumanTask, Instance, JSONType

__all__ = ["AuditEvent", "DefinitionVersion", "HumanTask", "Instance", "JSONType"]

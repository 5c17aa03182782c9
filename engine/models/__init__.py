"""SQLModel tables, one module per concept; importing this package registers them all for Alembic."""

import engine.models.service  # noqa: F401  (ticket metrics)
import notifications.models  # noqa: F401  (outbox and scheduler heartbeat tables)
from engine.models import auth as _auth  # noqa: F401  (API tokens)
from engine.models import customers, people  # noqa: F401  (each registers its own tables)
from engine.models import sla as _sla  # noqa: F401  (SLA clocks, their ledger and pending escalations)
from engine.models.core import AuditEvent, DefinitionVersion, HumanTask, Instance, JSONType

__all__ = ["AuditEvent", "DefinitionVersion", "HumanTask", "Instance", "JSONType"]

"""Core tables: definition versions, instances (one row each), human tasks and the audit log.

An instance row holds the serialized workflow state *without* its process spec (stored once per
definition version) plus denormalised columns for lists and reports, and a `row_version` for
optimistic concurrency. The audit log is append-only (database triggers refuse UPDATE/DELETE).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

from engine.clock import utcnow
from engine.models.types import PackedJSON, timestamp

# Business data is queried (JSONB on PostgreSQL); workflow state and specs are opaque blobs: specs plain JSON
# (one per definition version), a workflow's state deflated JSON (one per instance: engine.models.types).
JSONType = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Blobs must stay plain JSON text: JSONB reorders keys (engine.spiff restores order-independently anyway).
BlobJSON = sa.JSON()




class DefinitionVersion(SQLModel, table=True):
    """One published version of one workflow: its source, parsed spec and stage metadata."""

    __tablename__ = "definition_version"
    __table_args__ = (sa.UniqueConstraint("workflow", "version", name="uq_definition_version"),)

    id: int | None = Field(default=None, primary_key=True)
    workflow: str = Field(index=True, max_length=200)
    version: int
    content_hash: str = Field(max_length=64, index=True)
    source_name: str = Field(max_length=500)
    bpmn: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    dmn: dict[str, str] = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    spec: dict[str, Any] = Field(sa_column=sa.Column(BlobJSON, nullable=False))
    meta: dict[str, Any] = Field(sa_column=sa.Column(JSONType, nullable=False))
    created_at: datetime = timestamp(nullable=False, default=utcnow)


class Instance(SQLModel, table=True):
    """One running or finished workflow instance."""

    __tablename__ = "instance"
    __table_args__ = (  # the ticker's timer scan: running instances by next_due_at (engine.ticker)
        sa.Index("ix_instance_timer_due", "status", "next_due_at", postgresql_where=sa.text("next_due_at IS NOT NULL"),
                 sqlite_where=sa.text("next_due_at IS NOT NULL")),
    )

    id: int | None = Field(default=None, primary_key=True)
    workflow: str = Field(index=True, max_length=200)
    definition_version_id: int = Field(foreign_key="definition_version.id", index=True)
    stage: str | None = Field(default=None, index=True, max_length=200)
    stage_order: int | None = None
    status: str = Field(index=True, max_length=40)
    assignee: str | None = Field(default=None, index=True, max_length=200)
    customer_id: int | None = Field(default=None, index=True)
    customer_tier: str | None = Field(default=None, max_length=1)
    amount: float | None = None
    probability: float | None = None
    next_due_at: datetime | None = timestamp(nullable=True)  # indexed with status: ix_instance_timer_due
    # Set while the instance waits on the customer (SLA clocks pause); see Funnel.set_waiting.
    waiting_since: datetime | None = timestamp(nullable=True)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(JSONType, nullable=False))
    state: dict[str, Any] = Field(sa_column=sa.Column(PackedJSON(), nullable=False))
    row_version: int = Field(default=1, nullable=False)
    created_by: str = Field(max_length=200)
    created_at: datetime = timestamp(nullable=False, default=utcnow)
    updated_at: datetime = timestamp(nullable=False, default=utcnow)


class HumanTask(SQLModel, table=True):
    """A user task while it is (or was) ready: the work queues read this, not the workflow JSON."""

    __tablename__ = "human_task"
    # the open tasks of an instance (every change and permission check asks), chosen with or without statistics
    __table_args__ = (sa.Index("ix_human_task_open", "instance_id", postgresql_where=sa.text("status = 'ready'"),
                               sqlite_where=sa.text("status = 'ready'")),)

    id: int | None = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instance.id", index=True)
    task_uuid: str = Field(max_length=36, index=True)
    task_spec: str = Field(max_length=200)
    name: str = Field(max_length=300)
    stage: str | None = Field(default=None, max_length=200)
    lane: str | None = Field(default=None, max_length=200)
    role: str | None = Field(default=None, max_length=40)
    status: str = Field(max_length=20)  # ready | completed | cancelled (ix_human_task_open: the ready ones)
    assignee: str | None = Field(default=None, index=True, max_length=200)
    team: str | None = Field(default=None, index=True, max_length=100)  # whose queue holds it (issue 4)
    created_at: datetime = timestamp(nullable=False, default=utcnow)
    completed_at: datetime | None = timestamp(nullable=True)
    completed_by: str | None = Field(default=None, max_length=200)


class AuditEvent(SQLModel, table=True):
    """Append-only history: who did what to an instance, when, with which data and why."""

    __tablename__ = "audit_event"

    id: int | None = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instance.id", index=True)
    at: datetime = timestamp(nullable=False)
    actor: str = Field(max_length=200)
    kind: str = Field(max_length=40)  # created | advanced | moved_back | skipped
    from_stage: str | None = Field(default=None, max_length=200)
    to_stage: str | None = Field(default=None, max_length=200)
    # packed (0015): an assignment's explanation is ~1 KB of JSON; nothing queries inside it
    changes: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(PackedJSON(), nullable=False))
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    row_version: int

"""SLA tables (issue 5): clocks, their append-only ledger of events, and the escalation levels still to fire.

A clock's figures (consumed time, deadline, warning, breached?) are derived from its events
(engine.sla_ledger); the clock row caches the current cycle's status, deadline and warning instant for
lists and reports. `sla_due` holds one row per escalation level of a clock and cycle: pending rows
(fired_at NULL) are what the ticker scans (partial index on due_at), fired rows stay as the record;
the unique (clock, cycle, level) makes "each level fires exactly once" a database fact.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from engine.models.types import PackedJSON, timestamp


class SlaClock(SQLModel, table=True):
    """One SLA clock of an instance: per instance (first response, resolution) or per task (a department)."""

    __tablename__ = "sla_clock"
    # one clock per key and instance; on PostgreSQL a unique index over the key's md5 as a 16-byte uuid (0020), which
    # a portable model cannot declare (tests.db_helpers.model_diff expects that one difference there)
    __table_args__ = (sa.UniqueConstraint("instance_id", "key", name="uq_sla_clock_instance_key"),)

    id: int | None = Field(default=None, primary_key=True)
    instance_id: int = Field(foreign_key="instance.id")  # uq_sla_clock_instance_key leads with instance_id
    key: str = Field(max_length=120)  # the clock's name, plus ":<task uuid>" for a per-task clock (`task_uuid`)
    name: str = Field(max_length=40)
    title: str = Field(max_length=300)
    stage: str | None = Field(default=None, max_length=200)  # a per-task clock's stage (targets read it)
    calendar: str = Field(max_length=100)
    warning_ratio: float
    cycle: int = Field(default=1, nullable=False)
    status: str = Field(max_length=20)  # running | paused | stopped (never an index: only `<> stopped` is asked)
    target_seconds: float | None = None
    started_at: datetime = timestamp(nullable=False)
    stopped_at: datetime | None = timestamp(nullable=True)
    deadline_at: datetime | None = timestamp(nullable=True, index=True)
    warning_at: datetime | None = timestamp(nullable=True)
    updated_at: datetime = timestamp(nullable=False)

    @property
    def task_uuid(self) -> str | None:
        """The task a per-task clock counts, read from its key (not stored twice since 0019)."""
        return task_of(self.key, self.name)


def key_of(name: str, task_uuid: str | None) -> str:
    """A clock's key: its name, plus `:<task uuid>` for a per-task clock (`task_of` reads the task back)."""
    return name if task_uuid is None else f"{name}:{task_uuid}"


def task_of(key: str, name: str) -> str | None:
    """The task of a clock's key (see `key_of`), or None for a per-instance clock."""
    return None if key == name else key[len(name) + 1:]


def task_of_clock() -> sa.ColumnElement[Any]:
    """`task_of` in SQL, over the sla_clock table: NULL for a per-instance clock."""
    c = SlaClock.__table__.c  # type: ignore[attr-defined]
    return sa.case((c.key == c.name, sa.null()), else_=sa.func.substr(c.key, sa.func.length(c.name) + 2))


class SlaClockEvent(SQLModel, table=True):
    """Append-only ledger entry of a clock: start, pause, resume, stop or retarget (database triggers)."""

    __tablename__ = "sla_clock_event"

    id: int | None = Field(default=None, primary_key=True)
    clock_id: int = Field(foreign_key="sla_clock.id", index=True)  # the clock names the instance (0018)
    at: datetime = timestamp(nullable=False)
    kind: str = Field(max_length=20)
    cycle: int
    target_seconds: float | None = None  # start / retarget: the target from then on (None: no deadline)
    actor: str = Field(max_length=200)
    reason: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    # packed (0015): the DMN row that set the target, ~160 B of JSON, ~20 B packed
    detail: dict[str, Any] = Field(default_factory=dict, sa_column=sa.Column(PackedJSON(), nullable=False))


LEASED = "fired_at IS NULL AND lease_until IS NOT NULL"


class SlaDue(SQLModel, table=True):
    """One escalation level of one clock cycle: pending until the ticker fires it (once), then the record."""

    __tablename__ = "sla_due"
    __table_args__ = (
        sa.UniqueConstraint("clock_id", "cycle", "level", name="uq_sla_due_clock_cycle_level"),
        sa.Index("ix_sla_due_pending", "due_at", postgresql_where=sa.text("fired_at IS NULL"),
                 sqlite_where=sa.text("fired_at IS NULL")),
        # the pending rows a worker holds (few): engine.ticker.next_due's earliest lease
        sa.Index("ix_sla_due_leased", "lease_until", postgresql_where=sa.text(LEASED),
                 sqlite_where=sa.text(LEASED)),
    )

    id: int | None = Field(default=None, primary_key=True)
    clock_id: int = Field(foreign_key="sla_clock.id")  # uq_..._level leads with it; the clock names the instance
    cycle: int
    level: str = Field(max_length=40)
    severity: int  # 0 warning, 1 breach, 2+ escalation
    due_at: datetime = timestamp(nullable=False)
    fired_at: datetime | None = timestamp(nullable=True)
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = timestamp(nullable=True)

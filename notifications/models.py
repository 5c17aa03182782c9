"""Tables owned by notifications: the e-mail outbox and the background workers' heartbeat.

Registered on SQLModel.metadata (engine.models imports this module so Alembic sees it). The package
must not import `engine`, so the aware-UTC column type is defined here (and used by engine.models too),
and the JSON variant is restated.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlmodel import Field, SQLModel

JSONList = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


class _Micros(sa.types.UserDefinedType[int]):
    """SQLite's storage of a UTCDateTime: an integer, declared DATETIME as the migrations created it."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "DATETIME"


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend; on SQLite, stored as microseconds since the epoch.

    PostgreSQL keeps a timestamptz (8 bytes). SQLite has no time type: SQLAlchemy writes the text
    '2026-11-23 15:18:34.071173' (26 bytes) and parses it back per value. An integer takes 8 bytes and
    compares as a number; with ~45 timestamps and index entries per open instance, that is ~800 bytes
    each (bench.size). Rows written before migration 0017 held the text; reading still accepts it.
    The one column type of the engine and notifications (engine.models.types re-exports it).
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_Micros())
        return dialect.type_descriptor(sa.DateTime(timezone=True))

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | int | None:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError(f"a UTC column takes a datetime, not {type(value).__name__}")
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column; pass an aware datetime")
        if dialect.name == "sqlite":
            return (value - _EPOCH) // _MICRO
        return value.astimezone(UTC)

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, int):
            return _EPOCH + timedelta(microseconds=value)
        if isinstance(value, str):  # SQLite text from before 0017 (SQLAlchemy's own format)
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _ts(*, nullable: bool, index: bool = False) -> Any:
    return Field(default=None, sa_column=sa.Column(UTCDateTime(), nullable=nullable, index=index))


class OutboxMessage(SQLModel, table=True):
    """One e-mail, written with the event that caused it and kept after sending (the delivery record).

    Its content is either a template and the context to render it with (`template`, `context`: rendered by
    the sender, see notifications.outbox) or literal parts (`subject`, `text`, `html`); the sender records the
    subject it sent. Due: sent_at and failed_at NULL, next_attempt_at <= now and no live lease (lease_until < now).
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.UniqueConstraint("dedupe_key", name="uq_outbox_dedupe_key"),
        sa.CheckConstraint("template IS NOT NULL OR (subject IS NOT NULL AND text IS NOT NULL)",
                           name="ck_outbox_content"),
    )

    id: int | None = Field(default=None, primary_key=True)
    dedupe_key: str = Field(max_length=300)
    kind: str = Field(max_length=40, index=True)  # escalation | chase | assignment_alert | ...
    ref: str | None = Field(default=None, max_length=200, index=True)  # what it is about, e.g. "instance:42"
    recipients: list[str] = Field(default_factory=list, sa_column=sa.Column(JSONList, nullable=False))
    template: str | None = Field(default=None, max_length=60)  # notifications/templates/<template>.*.j2
    context: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONList, nullable=True))
    subject: str | None = Field(default=None, max_length=500)
    text: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    html: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    created_at: datetime = _ts(nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime | None = _ts(nullable=True, index=True)
    sent_at: datetime | None = _ts(nullable=True, index=True)
    failed_at: datetime | None = _ts(nullable=True)  # given up after permanent (5xx) refusals
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    claimed_by: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = _ts(nullable=True)


class SchedulerHeartbeat(SQLModel, table=True):
    """One row per background worker, refreshed while its tick job runs: what /health reads."""

    __tablename__ = "scheduler_heartbeat"

    worker_id: str = Field(primary_key=True, max_length=200)
    host: str = Field(max_length=200)
    pid: int
    started_at: datetime = _ts(nullable=False)
    beat_at: datetime = _ts(nullable=False)
    ticks: int = Field(default=0, nullable=False)
    fired: int = Field(default=0, nullable=False)
    sent: int = Field(default=0, nullable=False)
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text, nullable=True))
    stopped_at: datetime | None = _ts(nullable=True)

"""Per-ticket figures staff are assessed on: kept up to date by a listener, in each change's transaction.

For every service request the `ticket_metrics` row holds the first-response time, the handling time
(created -> closed), the time spent waiting on the customer (taken out of both), the reopen count,
the satisfaction score and who resolved it. Waiting time is derived from the audit log's
waiting_started / waiting_ended entries, so the figures always agree with the recorded history.
Durations are wall-clock seconds; business-hours figures come with the SLA calendar.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.db import read_session
from engine.errors import InvalidInput, NotFound
from engine.holds import WAITING_ENDED, WAITING_STARTED
from engine.instances import RUNNING, ChangeEvent
from engine.models import AuditEvent
from engine.models.service import TicketMetrics

TICKET_WORKFLOWS = frozenset({"service_request"})
FIRST_RESPONSE_TASK = "first_response"
RESOLUTION_TASK = "resolution"


@dataclass(frozen=True)
class TicketMetricsView:
    """One ticket's figures as reports and the API see them."""

    instance_id: int
    category: str | None
    priority: str | None
    created_at: datetime
    first_response_at: datetime | None
    first_response_by: str | None
    first_response_seconds: int | None
    resolved_by: str | None
    reopen_count: int
    waiting_seconds: int
    closed_at: datetime | None
    outcome: str | None
    handling_seconds: int | None
    satisfaction: int | None

    @classmethod
    def of(cls, row: TicketMetrics) -> TicketMetricsView:
        return cls(**{name: getattr(row, name) for name in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class TicketMetricsListener:
    """Updates a service request's ticket_metrics row after each change of the instance."""

    def after_change(self, event: ChangeEvent) -> None:
        row = event.instance
        if row.workflow not in TICKET_WORKFLOWS or row.id is None:
            return
        session = event.session
        metrics = session.get(TicketMetrics, row.id) or TicketMetrics(instance_id=row.id, created_at=row.created_at)
        data = row.data
        metrics.category = _text(data.get("category"), 40)
        metrics.priority = _text(data.get("priority"), 20)
        metrics.reopen_count = _whole(data.get("reopen_count")) or 0
        metrics.waiting_seconds = waited_seconds(session, row.id, until=event.now)
        for task in event.closed_tasks:
            if task.status != "completed":
                continue
            if task.task_spec == FIRST_RESPONSE_TASK and metrics.first_response_at is None:
                metrics.first_response_at, metrics.first_response_by = event.now, task.completed_by
                metrics.first_response_seconds = _net_seconds(metrics.created_at, event.now, metrics.waiting_seconds)
            elif task.task_spec == RESOLUTION_TASK:
                metrics.resolved_by = task.completed_by  # the last round's resolver is who resolved it
        if row.status != RUNNING and metrics.closed_at is None:
            metrics.closed_at, metrics.outcome = event.now, row.status
            metrics.handling_seconds = _net_seconds(metrics.created_at, event.now, metrics.waiting_seconds)
            metrics.satisfaction = _whole(data.get("satisfaction")) if data.get("resolution_accepted") is True else None
        metrics.updated_at = event.now
        session.add(metrics)


def waited_seconds(session: Session, instance_id: int, *, until: datetime) -> int:
    """Seconds spent waiting on the customer, from the audit log (a wait still open counts up to `until`)."""
    stmt = (select(AuditEvent.kind, AuditEvent.at)
            .where(AuditEvent.instance_id == instance_id,
                   col(AuditEvent.kind).in_((WAITING_STARTED, WAITING_ENDED)))
            .order_by(col(AuditEvent.id)))
    total, since = 0.0, None
    for kind, at in session.exec(stmt):
        if kind == WAITING_STARTED and since is None:
            since = _aware(at)
        elif kind == WAITING_ENDED and since is not None:
            total += (_aware(at) - since).total_seconds()
            since = None
    if since is not None:
        total += max(0.0, (_aware(until) - since).total_seconds())
    return int(total)


def ticket_metrics(engine: Engine, instance_id: int) -> TicketMetricsView:
    """One ticket's figures; NotFound for an id that is not a service request."""
    if not isinstance(instance_id, int) or isinstance(instance_id, bool):
        raise InvalidInput("instance id must be a whole number", "instance_id")
    with read_session(engine) as session:
        row = session.get(TicketMetrics, instance_id)
        if row is None:
            raise NotFound(f"instance {instance_id} is not a service request with recorded metrics")
        return TicketMetricsView.of(row)


def ticket_metrics_for(engine: Engine, *, resolved_by: str | None = None,
                       closed_only: bool = False) -> list[TicketMetricsView]:
    """Tickets' figures for staff assessment, oldest first; optionally one resolver's, or closed ones only."""
    stmt = select(TicketMetrics)
    if resolved_by is not None:
        stmt = stmt.where(TicketMetrics.resolved_by == resolved_by)
    if closed_only:
        stmt = stmt.where(col(TicketMetrics.closed_at).is_not(None))
    with read_session(engine) as session:
        return [TicketMetricsView.of(r) for r in session.exec(stmt.order_by(col(TicketMetrics.instance_id)))]


def _net_seconds(start: datetime, end: datetime, waiting: int) -> int:
    return max(0, int((_aware(end) - _aware(start)).total_seconds()) - waiting)


def _aware(moment: datetime) -> datetime:
    """SQLite hands timestamps back naive (they are stored as UTC)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _whole(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None

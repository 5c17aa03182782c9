"""Factories for SLA tests: moments in the shipped calendar, a service-desk roster, what the ticker wrote."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import people
from engine.calendar import BusinessCalendar, load_calendar
from engine.instances import Funnel
from engine.models import AuditEvent
from engine.models.sla import SlaClock, SlaClockEvent, SlaDue
from engine.sla_queries import ClockView, clocks_of
from engine.ticker import TickResult, tick
from engine.views import InstanceView
from notifications.models import OutboxMessage
from notifications.outbox import content
from tests.conftest import WORKFLOWS
from tests.service_factories import INTAKE, start_ticket

SHANGHAI = ZoneInfo("Asia/Shanghai")
SLA_KINDS = ("sla_warning", "sla_breach", "sla_escalation")
SKILLS = ("technical", "senior", "quality", "logistics", "complaints")


def default_calendar() -> BusinessCalendar:
    """The shipped calendar the shipped policies count in (Asia/Shanghai, 09-12 and 13-18 on workdays)."""
    return load_calendar(WORKFLOWS / "calendars" / "default.toml")


def shanghai(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A wall-clock time in the head office, as the aware UTC instant the engine works with."""
    return datetime(year, month, day, hour, minute, tzinfo=SHANGHAI).astimezone(UTC)


# Friday 20 November 2026, 16:00 in Shanghai: two business hours left in the week; no holiday near.
FRIDAY_4PM = shanghai(2026, 11, 20, 16)
MONDAY_9AM = shanghai(2026, 11, 23, 9)


def desk_roster(engine: Engine) -> None:
    """A service desk (desk1 in Shanghai, desk2 in Berlin), its manager and a head of service (admin role)."""
    people.create_user(engine, "desk1", display_name="Desk One", email="desk1@example.com",
                       time_zone="Asia/Shanghai", roles=("service_desk", "rep"), skills=SKILLS)
    people.create_user(engine, "desk2", display_name="Desk Two", email="desk2@example.com",
                       time_zone="Europe/Berlin", roles=("service_desk", "rep"), skills=SKILLS)
    people.create_user(engine, "mgr", display_name="Mia Manager", email="mgr@example.com",
                       time_zone="Europe/Berlin", roles=("manager",))
    people.create_user(engine, "head", display_name="Hal Head", email="head@example.com", time_zone="UTC",
                       roles=("admin",))
    people.create_team(engine, "service_desk", title="Service desk", manager="mgr", members=("desk1", "desk2"))


def ticket(funnel: Funnel, *, tier: str = "C", priority: str = "high", **kwargs: Any) -> InstanceView:
    """A service request in Intake whose data already names tier and priority (C + high: first response 8 h)."""
    return start_ticket(funnel, data={**INTAKE, "priority": priority}, customer_tier=tier, **kwargs)


def clock_named(funnel: Funnel, instance_id: int, name: str, now: datetime) -> ClockView:
    [found] = [c for c in clocks_of(funnel.engine, instance_id, now) if c.name == name]
    return found


def tick_at(funnel: Funnel, now: datetime, *, worker: str = "test-worker", **kwargs: Any) -> TickResult:
    return tick(funnel, now=now, worker_id=worker, **kwargs)


def sla_events(funnel: Funnel, instance_id: int | None = None) -> list[AuditEvent]:
    """The escalations fired (audit entries), oldest first; of one instance or of all."""
    with Session(funnel.engine) as session:
        stmt = select(AuditEvent).where(col(AuditEvent.kind).in_(SLA_KINDS))
        if instance_id is not None:
            stmt = stmt.where(AuditEvent.instance_id == instance_id)
        return list(session.exec(stmt.order_by(col(AuditEvent.id))))


def fired(funnel: Funnel, instance_id: int | None = None) -> list[tuple[str, str]]:
    """(clock, level) of every fired escalation, in firing order."""
    return [(e.changes["sla"]["clock"], e.changes["sla"]["level"]) for e in sla_events(funnel, instance_id)]


def outbox(engine: Engine, kind: str | None = None) -> list[OutboxMessage]:
    """The outbox in order, each row's subject, text and HTML as the sender will send them (rendered here)."""
    with Session(engine) as session:
        stmt = select(OutboxMessage)
        if kind is not None:
            stmt = stmt.where(OutboxMessage.kind == kind)
        rows = list(session.exec(stmt.order_by(col(OutboxMessage.id))))
    for row in rows:  # detached: filling the parts in writes nothing
        row.subject, row.text, row.html = content(row)
    return rows


def pending_due(engine: Engine) -> list[SlaDue]:
    with Session(engine) as session:
        return list(session.exec(select(SlaDue).where(col(SlaDue.fired_at).is_(None)).order_by(col(SlaDue.due_at))))


def due_of(instance_id: int) -> Any:
    """A filter for one instance's escalation rows: they belong to its clocks (sla_due names no instance, 0018)."""
    return col(SlaDue.clock_id).in_(select(SlaClock.id).where(SlaClock.instance_id == instance_id))


def clock_ids(engine: Engine, instance_id: int) -> set[int]:
    """The ids of one instance's clocks (what its escalation rows and ledger entries belong to)."""
    with Session(engine) as session:
        return {i for i in session.exec(select(SlaClock.id).where(SlaClock.instance_id == instance_id)) if i}


def all_due(engine: Engine) -> list[SlaDue]:
    with Session(engine) as session:
        return list(session.exec(select(SlaDue).order_by(col(SlaDue.id))))


def ledger_kinds(engine: Engine, instance_id: int, clock: str) -> list[tuple[str, int]]:
    """(kind, cycle) of a clock's ledger, in order."""
    with Session(engine) as session:
        stmt = (select(SlaClockEvent.kind, SlaClockEvent.cycle)
                .join(SlaClock, col(SlaClock.id) == col(SlaClockEvent.clock_id))
                .where(SlaClock.instance_id == instance_id, SlaClock.name == clock)
                .order_by(col(SlaClockEvent.id)))
        return [(k, c) for k, c in session.exec(stmt)]


def business_hours(delta: timedelta) -> float:
    return delta.total_seconds() / 3600

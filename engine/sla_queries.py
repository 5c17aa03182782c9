"""Read side of the SLA clocks for the API and reports: what is at risk or breached, and one instance's clocks.

Every figure is derived from the clocks' ledgers with engine.calendar (through engine.sla_ledger), the
same way the ticker derives what it fires and the e-mails show, so lists, reports and e-mails agree.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import sla_ledger as ledger
from engine.calendar import format_business
from engine.db import read_session
from engine.errors import InvalidInput, NotFound
from engine.instances import RUNNING
from engine.models import HumanTask, Instance
from engine.models.sla import SlaClock, SlaClockEvent, task_of_clock
from engine.settings import get_settings
from engine.sla import entries_of
from engine.sla_policy import Calendars

State = Literal["at_risk", "breached", "all"]
STATES = ("at_risk", "breached", "all")
MAX_LIMIT = 500


@dataclass(frozen=True)
class ClockEventView:
    """One ledger entry as people read it."""

    at: datetime
    kind: str  # start | pause | resume | stop | retarget
    cycle: int
    target_hours: float | None
    actor: str
    reason: str | None


@dataclass(frozen=True)
class CycleView:
    """A finished earlier cycle of a restarted clock (e.g. the resolution before a reopen)."""

    cycle: int
    started_at: datetime
    stopped_at: datetime | None
    target_hours: float | None
    consumed: str
    breached: bool


@dataclass(frozen=True)
class ClockView:
    """One clock's figures as at `now`: business time, in hours and minutes and in exact seconds."""

    id: int
    instance_id: int
    name: str
    title: str
    task_id: str | None
    stage: str | None
    calendar: str
    status: str  # running | paused | stopped
    cycle: int
    target_hours: float | None
    consumed: str  # "3 h 20 min" (engine.calendar.format_business)
    consumed_seconds: float
    remaining: str | None  # "4 h 40 min" or "overdue 1 h"; None without a target
    remaining_seconds: float | None
    deadline: datetime | None  # None: no target, or paused before reaching it
    warning_at: datetime | None
    breached: bool
    at_risk: bool  # the warning time has passed and the deadline has not
    started_at: datetime
    stopped_at: datetime | None
    events: list[ClockEventView] = field(default_factory=list)
    previous_cycles: list[CycleView] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SlaItem:
    """A clock in a list, with the instance it belongs to."""

    instance_id: int
    workflow: str
    stage: str | None
    customer_tier: str | None
    assignee: str | None
    clock: ClockView

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def clocks_of(engine: Engine, instance_id: int, now: datetime, *, calendars: Calendars | None = None
              ) -> list[ClockView]:
    """Every clock of an instance (stopped ones too), oldest first, with its ledger."""
    _check_now(now)
    if not isinstance(instance_id, int) or isinstance(instance_id, bool):
        raise InvalidInput("instance id must be a whole number", "instance_id")
    with read_session(engine) as session:
        if session.get(Instance, instance_id) is None:
            raise NotFound(f"instance {instance_id} does not exist")
        rows = list(session.exec(select(SlaClock).where(SlaClock.instance_id == instance_id)
                                 .order_by(col(SlaClock.id))))
        return _views(session, rows, now, calendars or _calendars())


def sla_items(engine: Engine, *, state: State, now: datetime, limit: int = 100, offset: int = 0,
              workflow: str | None = None, assignee: str | None = None,
              calendars: Calendars | None = None) -> list[SlaItem]:
    """Open clocks (running or paused, of running instances), soonest deadline first; at_risk: past the
    warning time but not the deadline; breached: past the deadline (a breach stays one while paused)."""
    _check_now(now)
    if state not in STATES:
        raise InvalidInput(f"state must be one of {', '.join(STATES)}, not {state!r}", "state")
    for name, value, low, high in (("limit", limit, 1, MAX_LIMIT), ("offset", offset, 0, None)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low or (high and value > high):
            raise InvalidInput(f"{name} must be a whole number from {low}" + (f" to {high}" if high else ""), name)
    holder = sa.func.coalesce(col(HumanTask.assignee), col(Instance.assignee))
    stmt = (select(SlaClock, Instance, holder)
            .join(Instance, col(Instance.id) == col(SlaClock.instance_id))
            .outerjoin(HumanTask, sa.and_(col(HumanTask.instance_id) == col(SlaClock.instance_id),
                                          col(HumanTask.task_uuid) == task_of_clock()))
            .where(col(SlaClock.status) != ledger.STOPPED, col(Instance.status) == RUNNING))
    deadline, warning = col(SlaClock.deadline_at), col(SlaClock.warning_at)
    if state == "breached":
        stmt = stmt.where(deadline <= now)
    elif state == "at_risk":
        stmt = stmt.where(warning <= now, sa.or_(deadline.is_(None), deadline > now))
    if workflow is not None:
        stmt = stmt.where(col(Instance.workflow) == workflow)
    if assignee is not None:
        stmt = stmt.where(holder == assignee)
    stmt = stmt.order_by(deadline.is_(None), deadline, col(SlaClock.id)).limit(limit).offset(offset)
    with read_session(engine) as session:
        found = list(session.exec(stmt))
        views = _views(session, [c for c, _, _ in found], now, calendars or _calendars())
        return [SlaItem(i.id or 0, i.workflow, i.stage, i.customer_tier, who, v)
                for (_, i, who), v in zip(found, views, strict=True)]


def _views(session: Session, clocks: list[SlaClock], now: datetime, calendars: Calendars) -> list[ClockView]:
    ids = [c.id or 0 for c in clocks]
    ledgers = entries_of(session, ids)
    events: dict[int, list[ClockEventView]] = {i: [] for i in ids}
    if ids:
        stmt = select(SlaClockEvent).where(col(SlaClockEvent.clock_id).in_(ids)).order_by(col(SlaClockEvent.id))
        for e in session.exec(stmt):
            hours = None if e.target_seconds is None else e.target_seconds / 3600
            events[e.clock_id].append(ClockEventView(e.at, e.kind, e.cycle, hours, e.actor, e.reason))
    return [_view(c, ledgers[c.id or 0], events[c.id or 0], now, calendars) for c in clocks]


def _view(clock: SlaClock, entries: list[ledger.Entry], events: list[ClockEventView], now: datetime,
          calendars: Calendars) -> ClockView:
    calendar = calendars.get(clock.calendar)
    f = ledger.derive(calendar, entries, now=now, warning=clock.warning_ratio)
    previous = []
    for cycle in range(1, f.cycle):
        if any(e.cycle == cycle for e in entries):
            old = ledger.derive(calendar, entries, now=now, warning=clock.warning_ratio, cycle=cycle)
            previous.append(CycleView(cycle, old.started_at, old.stopped_at, _hours(old.target),
                                      format_business(old.consumed), old.breached))
    at_risk = (f.status != ledger.STOPPED and not f.breached and f.warning_at is not None and f.warning_at <= now)
    return ClockView(
        id=clock.id or 0, instance_id=clock.instance_id, name=clock.name, title=clock.title, task_id=clock.task_uuid,
        stage=clock.stage, calendar=clock.calendar, status=f.status, cycle=f.cycle, target_hours=_hours(f.target),
        consumed=format_business(f.consumed), consumed_seconds=f.consumed.total_seconds(),
        remaining=None if f.remaining is None else format_business(f.remaining),
        remaining_seconds=None if f.remaining is None else f.remaining.total_seconds(),
        deadline=f.deadline, warning_at=f.warning_at, breached=f.breached, at_risk=at_risk,
        started_at=f.started_at, stopped_at=f.stopped_at, events=events, previous_cycles=previous,
    )


def _hours(target: timedelta | None) -> float | None:
    return None if target is None else target.total_seconds() / 3600


def _check_now(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise InvalidInput("now must be an aware date and time", "now")


def _calendars() -> Calendars:
    """The calendars beside the configured workflows folder (FUNNEL_WORKFLOWS_DIR)."""
    return _calendars_in(get_settings().workflows_dir)


@functools.lru_cache(maxsize=8)
def _calendars_in(workflows_dir: Path) -> Calendars:
    return Calendars.beside(workflows_dir)

"""The ticker: fires what is due - SLA escalation levels and SpiffWorkflow timers - exactly once, at `now`.

The database is the source of truth; any number of worker processes may tick. Each pass:
- claims due escalation rows (`sla_due`): on PostgreSQL `SELECT ... FOR UPDATE SKIP LOCKED` inside the
  claiming UPDATE, on SQLite a lease (claimed_by / lease_until; an expired lease may be taken over);
  each claimed row then fires in its own transaction that begins with the guarded
  `UPDATE sla_due SET fired_at ... WHERE fired_at IS NULL AND claimed_by = me` and, in the same
  transaction, writes the instance's audit entry and the e-mails (notifications.outbox);
- takes instances whose next_due_at has passed (PostgreSQL: a row lock with SKIP LOCKED; SQLite: the
  write lock, taken first) and fires their held timers with the given `now` (engine.spiff.fire_timers),
  writing the new state, tasks, audit entry and chase e-mails in one transaction.
Passes repeat until nothing due remains (no batch cap), so after downtime every missed event fires
once. A row is re-checked against its clock's ledger before it fires: a stopped clock never escalates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import sla_ledger as ledger
from engine.calendar import format_business
from engine.db import is_postgres
from engine.instances import RUNNING, ChangeEvent, Funnel
from engine.models import AuditEvent, HumanTask, Instance
from engine.models.sla import SlaClock, SlaDue
from engine.settings import get_settings
from engine.sla import SlaListener, entries_of, keep_timers
from engine.sla_mail import people_for, send_chase, send_escalation
from engine.sla_policy import Calendars, Level
from engine.spiff import Workflow, fire_timers

SLA_ACTOR = "system:sla"
TIMER_ACTOR = "system:timer"
LEASE = timedelta(seconds=60)
log = logging.getLogger(__name__)


@dataclass
class TickResult:
    """What one tick did."""

    fired: dict[str, int] = field(default_factory=dict)  # audit kind (sla_warning...) -> levels fired
    timers: int = 0  # Spiff timers fired
    emails: int = 0  # messages added to the outbox
    skipped: int = 0  # due rows voided (clock stopped) or rescheduled (not due after all)
    failed: list[str] = field(default_factory=list)  # what could not fire, and why (retried next tick)
    passes: int = 0

    @property
    def total(self) -> int:
        return sum(self.fired.values()) + self.timers


@dataclass
class _Tick:
    funnel: Funnel
    now: datetime
    worker: str
    batch: int
    base_url: str
    calendars: Calendars
    result: TickResult = field(default_factory=TickResult)
    broken_dues: set[int] = field(default_factory=set)
    done_instances: set[int] = field(default_factory=set)

    @property
    def engine(self) -> Engine:
        return self.funnel.engine


def tick(funnel: Funnel, *, now: datetime, batch: int = 500, worker_id: str,
         base_url: str | None = None) -> TickResult:
    """Fire everything due at `now`, each exactly once across all workers; loops until nothing is due.

    `worker_id` names this worker's claims (leases); `base_url` starts the links in e-mails
    (default: FUNNEL_BASE_URL); `batch` bounds one claim, not the tick.
    """
    if now.tzinfo is None:
        raise ValueError("tick needs an aware `now`")
    listener = next((x for x in funnel.listeners if isinstance(x, SlaListener)), None)
    calendars = listener.calendars if listener is not None else Calendars()
    run = _Tick(funnel, now, worker_id, max(1, batch), base_url or get_settings().base_url, calendars)
    while True:
        run.result.passes += 1
        claimed = _claim(run)
        for due_id in claimed:
            _guard(run, f"sla_due {due_id}", lambda d=due_id: _fire_due(run, d), broken=(run.broken_dues, due_id))
        instances = _due_instances(run)
        for instance_id in instances:
            run.done_instances.add(instance_id)
            _guard(run, f"instance {instance_id} timers", lambda i=instance_id: _fire_instance(run, i))
        if not claimed and not instances:
            return run.result


def next_due(engine: Engine) -> datetime | None:
    """When something next falls due (a pending escalation or a waiting timer), so a loop can sleep until then."""
    with Session(engine) as session:
        due_at = col(SlaDue.due_at)
        lease = sa.func.coalesce(col(SlaDue.lease_until), due_at)
        first_due = session.exec(select(sa.func.min(sa.case((lease > due_at, lease), else_=due_at)))
                                 .where(col(SlaDue.fired_at).is_(None))).one()
        first_timer = session.exec(select(sa.func.min(col(Instance.next_due_at)))
                                   .where(Instance.status == RUNNING)).one()
    found = [_aware(t) for t in (first_due, first_timer) if t is not None]
    return min(found) if found else None


def _aware(moment: Any) -> datetime:
    """min() over a column comes back without the column type; SQLite hands back text or naive values."""
    value = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _guard(run: _Tick, what: str, action: Any, broken: tuple[set[int], int] | None = None) -> None:
    """One item's failure is logged and reported, never stops the others."""
    try:
        action()
    except Exception as err:
        log.exception("tick: %s failed", what)
        run.result.failed.append(f"{what}: {type(err).__name__}: {err}")
        if broken is not None:
            broken[0].add(broken[1])


# ---------------------------------------------------------------- escalation levels


def _claim(run: _Tick) -> list[int]:
    """Take up to `batch` due, unclaimed (or lease-expired) rows for this worker; their ids."""
    lease_until = run.now + LEASE
    free = sa.or_(col(SlaDue.claimed_by).is_(None), col(SlaDue.lease_until) < run.now)
    pick = (select(SlaDue.id).where(col(SlaDue.fired_at).is_(None), col(SlaDue.due_at) <= run.now, free,
                                    col(SlaDue.id).not_in(run.broken_dues or [-1]))
            .order_by(col(SlaDue.due_at), col(SlaDue.id)).limit(run.batch))
    with Session(run.engine) as session:
        if is_postgres(run.engine):
            pick = pick.with_for_update(skip_locked=True)
        stmt = sa.update(SlaDue).where(col(SlaDue.id).in_(pick.scalar_subquery()))
        session.execute(stmt.values(claimed_by=run.worker, lease_until=lease_until)
                        .execution_options(synchronize_session=False))
        mine = select(SlaDue.id).where(SlaDue.claimed_by == run.worker, SlaDue.lease_until == lease_until,
                                       col(SlaDue.fired_at).is_(None))
        claimed = [i for i in session.exec(mine.order_by(col(SlaDue.due_at), col(SlaDue.id))) if i is not None]
        session.commit()
    return claimed


def _fire_due(run: _Tick, due_id: int) -> None:
    """Fire one claimed level: the guarded UPDATE first, then the audit entry and e-mails, one commit."""
    with Session(run.engine) as session:
        taken = session.execute(
            sa.update(SlaDue).where(col(SlaDue.id) == due_id, col(SlaDue.fired_at).is_(None),
                                    col(SlaDue.claimed_by) == run.worker)
            .values(fired_at=run.now).execution_options(synchronize_session=False))
        if taken.rowcount != 1:  # type: ignore[attr-defined]
            return  # fulfilled (deleted), rescheduled or taken over meanwhile: nothing to do
        due = session.get(SlaDue, due_id)
        assert due is not None
        clock = session.get(SlaClock, due.clock_id)
        instance = session.get(Instance, due.instance_id)
        assert clock is not None and instance is not None
        definition = run.funnel.definitions.get(instance.definition_version_id)
        policy = definition.meta.sla
        level = next((lv for lv in policy.levels if lv.name == due.level), None) if policy else None
        calendar = run.calendars.get(clock.calendar)
        entries = entries_of(session, [clock.id or 0])[clock.id or 0]
        figures = ledger.derive(calendar, entries, now=run.now, warning=clock.warning_ratio, cycle=due.cycle)
        when = None
        if level is not None and figures.target is not None and figures.status != ledger.STOPPED:
            when = ledger.reached(calendar, ledger.spans(entries, due.cycle),
                                  level.threshold(figures.target, clock.warning_ratio))
        if level is None or instance.status != RUNNING or when is None or when > run.now:
            session.rollback()
            _reschedule(run, due_id, when if level is not None and instance.status == RUNNING else None)
            return
        deadline = figures.deadline or calendar.add(run.now, max(figures.remaining or timedelta(0), timedelta(0)))
        _record_level(run, session, instance=instance, clock=clock, level=level, figures=figures, deadline=deadline,
                      title=definition.meta.title)
        session.commit()
        run.result.fired[level.audit_kind] = run.result.fired.get(level.audit_kind, 0) + 1


def _record_level(run: _Tick, session: Session, *, instance: Instance, clock: SlaClock, level: Level,
                  figures: ledger.Figures, deadline: datetime, title: str) -> None:
    task = None
    if clock.task_uuid:
        task = session.exec(select(HumanTask).where(HumanTask.instance_id == instance.id,
                                                    HumanTask.task_uuid == clock.task_uuid)).first()
    recipients, unreachable = people_for(session, level.notify, instance=instance, task=task)
    run.result.emails += send_escalation(session, instance=instance, clock=clock, level=level, figures=figures,
                                         deadline=deadline, recipients=recipients, now=run.now, title=title,
                                         base_url=run.base_url)
    remaining = figures.remaining or timedelta(0)
    late = remaining < timedelta(0)
    state = f"overdue by {format_business(-remaining)}" if late else f"{format_business(remaining)} left"
    session.add(AuditEvent(
        instance_id=instance.id or 0, at=run.now, actor=SLA_ACTOR, kind=level.audit_kind, from_stage=instance.stage,
        to_stage=instance.stage, row_version=instance.row_version,
        reason=f"{clock.title}: {level.name} ({state}; deadline {deadline.isoformat()})",
        changes={"sla": {"clock": clock.name, "title": clock.title, "clock_id": clock.id, "cycle": figures.cycle,
                         "level": level.name, "severity": level.severity, "deadline": deadline.isoformat(),
                         "target_hours": figures.target.total_seconds() / 3600 if figures.target else None,
                         "consumed_seconds": figures.consumed.total_seconds(),
                         "remaining_seconds": remaining.total_seconds(),
                         "notified": [r.login for r in recipients], "unreachable": unreachable}},
    ))


def _reschedule(run: _Tick, due_id: int, when: datetime | None) -> None:
    """A claimed row that is not due after all: move it to its real time, or drop it (clock stopped)."""
    run.result.skipped += 1
    with Session(run.engine) as session:
        guard = sa.and_(col(SlaDue.id) == due_id, col(SlaDue.fired_at).is_(None), col(SlaDue.claimed_by) == run.worker)
        if when is None:
            session.execute(sa.delete(SlaDue).where(guard).execution_options(synchronize_session=False))
        else:
            session.execute(sa.update(SlaDue).where(guard).values(due_at=when, claimed_by=None, lease_until=None)
                            .execution_options(synchronize_session=False))
        session.commit()


# ---------------------------------------------------------------- SpiffWorkflow timers


def _due_instances(run: _Tick) -> list[int]:
    stmt = (select(Instance.id).where(col(Instance.next_due_at) <= run.now, Instance.status == RUNNING,
                                      col(Instance.id).not_in(run.done_instances or [-1]))
            .order_by(col(Instance.next_due_at), col(Instance.id)).limit(run.batch))
    with Session(run.engine) as session:
        return [i for i in session.exec(stmt) if i is not None]


def _fire_instance(run: _Tick, instance_id: int) -> None:
    """Fire the due timers of one instance with the tick's `now`, as one change of the instance."""
    with Session(run.engine) as session:
        due = sa.and_(col(Instance.id) == instance_id, col(Instance.next_due_at) <= run.now,
                      col(Instance.status) == RUNNING)
        if is_postgres(run.engine):
            locked = session.exec(select(Instance.id).where(due).with_for_update(skip_locked=True)).first()
        else:  # begin with a write: SQLite's lock, held to the commit, serializes competing tickers
            result = session.execute(sa.update(Instance).where(due).values(next_due_at=Instance.next_due_at))
            locked = instance_id if result.rowcount == 1 else None  # type: ignore[attr-defined]
        if locked is None:
            return
        row = session.get(Instance, instance_id, populate_existing=True)
        assert row is not None
        definition = run.funnel.definitions.get(row.definition_version_id)
        workflow = Workflow.restore(definition.specs, row.state)
        before, from_stage = workflow.data(), row.stage
        fired = fire_timers(workflow, run.now)
        if fired:
            run.funnel._apply_columns(row, definition, workflow)
            row.state, row.row_version, row.updated_at = workflow.state(), row.row_version + 1, run.now
            session.add(row)
            session.flush()
            opened, closed = Funnel._sync_tasks(session, row, definition, workflow, now=run.now, actor=TIMER_ACTOR,
                                                completed=None)
            for timer in fired:
                _record_timer(run, session, row, timer, title=definition.meta.title)
            event = ChangeEvent(run.funnel, session, row, definition, "timer_fired", TIMER_ACTOR, run.now, from_stage,
                                before, opened, closed)
            for listener in run.funnel.listeners:
                listener.after_change(event)
        else:  # nothing due after all (a stale next_due_at): put it right
            keep_timers(ChangeEvent(run.funnel, session, row, definition, "timer_fired", TIMER_ACTOR, run.now,
                                    from_stage, before))
        session.commit()
        run.result.timers += len(fired)


def _record_timer(run: _Tick, session: Session, row: Instance, timer: Any, *, title: str) -> None:
    """Audit one fired timer; a boundary timer on a user task chases whoever holds its open tasks."""
    sent: list[dict[str, Any]] = []
    if timer.attached_to:
        specs = (timer.attached_to, f"{timer.attached_to} [child]")
        stmt = (select(HumanTask).where(HumanTask.instance_id == row.id, HumanTask.status == "ready",
                                        col(HumanTask.task_spec).in_(specs)).order_by(col(HumanTask.id)))
        tasks = list(session.exec(stmt))
        earlier = session.exec(select(sa.func.count()).select_from(AuditEvent).where(
            AuditEvent.instance_id == row.id, AuditEvent.kind == "timer_fired")).one()
        sent = send_chase(session, instance=row, timer_task=timer.task_id, tasks=tasks, chase=int(earlier) + 1,
                          now=run.now, title=title, base_url=run.base_url)
        run.result.emails += sum(len(s["to"]) for s in sent)
    session.add(AuditEvent(
        instance_id=row.id or 0, at=run.now, actor=TIMER_ACTOR, kind="timer_fired", from_stage=row.stage,
        to_stage=row.stage, row_version=row.row_version,
        reason=f"{timer.name} (due {timer.due_at.isoformat() if timer.due_at else '?'})",
        changes={"timer": {"name": timer.name, "spec": timer.spec, "task": timer.task_id,
                           "due_at": timer.due_at.isoformat() if timer.due_at else None,
                           "attached_to": timer.attached_to}, "chased": sent},
    ))

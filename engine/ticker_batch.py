"""Claim and fire a batch of due escalation levels in one transaction, with a handful of set-based statements.

1. one `UPDATE sla_due SET claimed_by = me, lease_until = .., fired_at = now WHERE id IN (the first `batch` due,
   free rows) RETURNING ...` claims and takes the rows together (on PostgreSQL the row choice is
   `FOR UPDATE SKIP LOCKED`, so the batch never waits on a row a concurrent change of that clock is rewriting:
   such a row is left for the next pass);
2. the clocks (with their instances and customers' names), ledgers and tasks of the whole batch are read in one
   query each, and the people from this process's copy of them (engine.directory; the people stamp that checks it
   is current comes as a column of the clocks' query);
3. each row is decided in Python exactly as the one-by-one path decides it (engine.sla_ledger is pure): fire it
   (audit entry and e-mails), move it to its real due time, or drop it (clock stopped, instance ended);
4. the audit entries and the outbox rows are inserted with one statement each (the outbox keeps its
   `ON CONFLICT (dedupe_key) DO NOTHING`; on PostgreSQL both as column arrays in one round trip,
   notifications.bulk), rows not due after all are moved or dropped in bulk, one commit.
A row whose decision raises (a missing calendar, an unusable address) is put back (fired_at NULL, still claimed,
so it is retried once its lease runs out) and reported, the others fire. If the transaction itself fails, nothing
of it stays, not even the claim: the caller then claims in a transaction of its own and fires row by row.

The claim used to be a transaction of its own, committed before the firing one. Taking the rows in the firing
transaction saves a commit (a WAL sync on SQLite) and two statements per pass, ~1 ms of a 7 ms tick of 20 levels
on SQLite and ~2 of 14 on PostgreSQL, and a worker that dies mid-batch now leaves its rows free at once, rather
than leased for a minute.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Row
from sqlmodel import Session

from engine import sla_ledger as ledger
from engine.calendar import BusinessCalendar, format_business
from engine.db import among, among_param
from engine.definitions import LoadedDefinition
from engine.directory import STAMP, Directory, people_as_of
from engine.instances import RUNNING, Funnel
from engine.models import AuditEvent, HumanTask, Instance
from engine.models.customers import Customer
from engine.models.sla import SlaClock, SlaDue, task_of
from engine.models.types import pack
from engine.sla import entries_of
from engine.sla_mail import escalation_mails, item_of
from engine.sla_policy import Calendars, Level
from notifications.bulk import array_insert, insert_arrays, pipeline
from notifications.outbox import enqueue_many
from notifications.render import Recipient

SLA_ACTOR = "system:sla"
LEASE = timedelta(seconds=60)  # how long a claimed row that did not fire stays with its worker
log = logging.getLogger("engine.ticker")  # one logger for everything the ticker does

_DUE = SlaDue.__table__  # type: ignore[attr-defined]
_CLOCK = SlaClock.__table__  # type: ignore[attr-defined]
_INSTANCE = Instance.__table__  # type: ignore[attr-defined]
_TASK = HumanTask.__table__  # type: ignore[attr-defined]
_AUDIT = AuditEvent.__table__  # type: ignore[attr-defined]
_CUSTOMER = Customer.__table__  # type: ignore[attr-defined]


def _clocks(postgres: bool) -> Any:
    """Each clock (`b_ids`) with its instance, its customer's name and the people stamp (engine.directory): one
    statement, not four."""
    c, i, named = _CLOCK.c, _INSTANCE.c, _CUSTOMER.c
    return (sa.select(c.id, c.instance_id, c.key, c.name, c.title, c.calendar, c.warning_ratio, i.workflow,
                      i.definition_version_id, i.stage, i.status, i.assignee, i.customer_id, i.customer_tier, i.data,
                      i.row_version, named.name.label("customer_name"), STAMP.label("people_stamp"))
            .select_from(_CLOCK.join(_INSTANCE, i.id == c.instance_id).outerjoin(_CUSTOMER, named.id == i.customer_id))
            .where(among_param(c.id, "b_ids", postgres=postgres)))


# PostgreSQL: the audit entries as column arrays (notifications.bulk), `changes` packed as PackedJSON stores it
_AUDIT_ARRAYS = array_insert("audit_event", {
    "instance_id": "int4", "at": "timestamptz", "actor": "varchar", "kind": "varchar", "from_stage": "varchar",
    "to_stage": "varchar", "row_version": "int4", "reason": "text", "changes": "bytea"})

_T = _TASK.c
# Built once, by dialect (PostgreSQL?)
_CLOCKS = {pg: _clocks(pg) for pg in (False, True)}
# The tasks of the instances `b_ids`, the clocks' tasks picked from them in Python: given both IN lists and an
# ORDER BY, SQLite (no statistics) chose to walk the task_uuid index or the whole table (66 ms per 500 levels at
# 100k instances)
_TASKS = {pg: sa.select(_T.id, _T.instance_id, _T.task_uuid, _T.status, _T.assignee, _T.team)
          .where(among_param(_T.instance_id, "b_ids", postgres=pg)) for pg in (False, True)}


@dataclass
class BatchOutcome:
    """What one batch did, applied to the tick's result only once its transaction committed."""

    fired: dict[str, int] = field(default_factory=dict)  # audit kind -> levels fired
    emails: int = 0
    skipped: int = 0  # moved to their real due time or dropped
    failed: dict[int, str] = field(default_factory=dict)  # due id -> why it could not fire (put back)
    taken: int = 0  # rows claimed by this batch (fired, moved, dropped or put back)


@dataclass(frozen=True)
class Verdict:
    """Whether a claimed level fires now (`level` set), moves to its real time (`move_to`) or goes (neither)."""

    level: Level | None
    figures: ledger.Figures
    deadline: datetime
    move_to: datetime | None = None


def judge(definition: LoadedDefinition, due: Any, *, status: str, calendar: BusinessCalendar,
          entries: Sequence[ledger.Entry], warning: float, now: datetime) -> Verdict:
    """Re-check a claimed level against its clock's ledger: the one rule both firing paths apply."""
    policy = definition.meta.sla
    level = next((lv for lv in policy.levels if lv.name == due.level), None) if policy else None
    figures = ledger.derive(calendar, entries, now=now, warning=warning, cycle=due.cycle)
    when = None
    if level is not None and figures.target is not None and figures.status != ledger.STOPPED:
        if not level.after:  # the warning or the deadline itself: derive has just computed it
            when = figures.warning_at if level.at == "warning" else figures.deadline
        else:
            when = ledger.reached(calendar, ledger.spans(entries, due.cycle), level.threshold(figures.target, warning))
    deadline = figures.deadline or calendar.add(now, max(figures.remaining or timedelta(0), timedelta(0)))
    if level is None or status != RUNNING or when is None or when > now:
        keep = level is not None and status == RUNNING and when is not None
        return Verdict(None, figures, deadline, move_to=when if keep else None)
    return Verdict(level, figures, deadline)


def level_audit(*, instance_id: int, stage: str | None, row_version: int, clock_id: int | None, clock_name: str,
                clock_title: str, level: Level, figures: ledger.Figures, deadline: datetime,
                recipients: Sequence[Recipient], unreachable: Sequence[str], now: datetime) -> dict[str, Any]:
    """The audit entry of one fired level (AuditEvent's columns): the same from the batch and the one-by-one path."""
    remaining = figures.remaining or timedelta(0)
    late = remaining < timedelta(0)
    state = f"overdue by {format_business(-remaining)}" if late else f"{format_business(remaining)} left"
    return dict(
        instance_id=instance_id, at=now, actor=SLA_ACTOR, kind=level.audit_kind, from_stage=stage, to_stage=stage,
        row_version=row_version, reason=f"{clock_title}: {level.name} ({state}; deadline {deadline.isoformat()})",
        changes={"sla": {"clock": clock_name, "title": clock_title, "clock_id": clock_id, "cycle": figures.cycle,
                         "level": level.name, "severity": level.severity, "deadline": deadline.isoformat(),
                         "target_hours": figures.target.total_seconds() / 3600 if figures.target else None,
                         "consumed_seconds": figures.consumed.total_seconds(),
                         "remaining_seconds": remaining.total_seconds(),
                         "notified": [r.login for r in recipients], "unreachable": list(unreachable)}},
    )


@functools.lru_cache(maxsize=32)
def _claiming(*, postgres: bool, fire: bool, batch: int) -> Any:
    """`UPDATE sla_due SET claimed_by, lease_until [, fired_at] WHERE id IN (the first `batch` due rows free at
    `b_now`, by due time, not in `b_exclude`; on PostgreSQL FOR UPDATE SKIP LOCKED) RETURNING ...`.

    Built once per shape (building one cost ~0.45 ms, a fifteenth of a steady tick). Two choices are for
    PostgreSQL's planner, measured with EXPLAIN ANALYZE at 1M deadlines:
    - the batch size is written into the SQL, not bound: once psycopg prepares the statement, a generic plan
      for `LIMIT $n` guesses a tenth of the due rows and hash-joins over a scan of the whole table (244 ms), so
      the server planned every run afresh instead (0.8 ms each); with the literal the generic plan walks the
      due-time index and stops after `batch` rows;
    - the pick is ordered by due time only: the pending index is on `due_at` alone, so `due_at, id` made the
      server read and sort every row due at the same instant before taking the first ones (5 ms to take 28 of
      5,000 due together, paid by every batch of a burst). Which of the rows due at one instant go first does
      not matter; the rows still come back sorted by (due time, id) (claim_due)."""
    when = _DUE.c.due_at.type
    now = sa.bindparam("b_now", type_=when)
    free = sa.or_(_DUE.c.claimed_by.is_(None), _DUE.c.lease_until < now)
    pick = (sa.select(_DUE.c.id).where(_DUE.c.fired_at.is_(None), _DUE.c.due_at <= now, free,
                                       _DUE.c.id.not_in(sa.bindparam("b_exclude", expanding=True)))
            .order_by(_DUE.c.due_at).limit(sa.literal_column(str(int(batch)))))
    if postgres:
        pick = pick.with_for_update(skip_locked=True)
    values = {"claimed_by": sa.bindparam("b_worker"), "lease_until": sa.bindparam("b_lease", type_=when)}
    if fire:
        values["fired_at"] = now
    return (sa.update(_DUE).where(_DUE.c.id.in_(pick.scalar_subquery())).values(values)
            .returning(_DUE.c.id, _DUE.c.clock_id, _DUE.c.cycle, _DUE.c.level, _DUE.c.due_at))


def claim_due(session: Session, *, now: datetime, worker: str, batch: int, exclude: Collection[int],
              fire: bool) -> list[Row[Any]]:
    """Claim for `worker` up to `batch` due rows free at `now` (never claimed, or their lease ran out), but not
    `exclude`, and with `fire` mark them fired as well; them in firing order (due time, then id). Only rows this
    statement took come back, never an earlier claim. The caller's transaction commits it."""
    postgres = session.get_bind().dialect.name == "postgresql"
    params = {"b_now": now, "b_lease": now + LEASE, "b_worker": worker, "b_exclude": sorted(exclude) or [-1]}
    statement = _claiming(postgres=postgres, fire=fire, batch=batch)
    return sorted(session.execute(statement, params), key=lambda row: (row.due_at, row.id))


def fire_batch(funnel: Funnel, *, now: datetime, worker: str, batch: int, exclude: Collection[int],
               calendars: Calendars, base_url: str) -> BatchOutcome:
    """Claim up to `batch` due rows (not `exclude`) and fire them, one transaction; raises if that fails."""
    with Session(funnel.engine) as session:
        run = _Batch(funnel, session, now=now, calendars=calendars, base_url=base_url)
        taken = run.take(worker, batch, exclude)
        if taken:
            run.load(taken)
            for due in taken:
                run.decide(due)
            run.write()
        session.commit()
    return run.outcome


class _Batch:
    """One transaction's worth of levels: what was read for them and what they will write."""

    def __init__(self, funnel: Funnel, session: Session, *, now: datetime, calendars: Calendars,
                 base_url: str) -> None:
        self.funnel, self.session, self.now = funnel, session, now
        self.dialect = session.get_bind().dialect
        self.calendars, self.base_url = calendars, base_url
        self.outcome = BatchOutcome()
        self.people: Directory | None = None  # read in load(): a pass that took nothing reads no people
        self.clocks: dict[int, Row[Any]] = {}
        self.entries: dict[int, list[ledger.Entry]] = {}
        self.tasks: dict[tuple[int, str], Row[Any]] = {}
        self.definitions: dict[int, LoadedDefinition] = {}
        self.audit: list[dict[str, Any]] = []
        self.mails: list[dict[str, Any]] = []
        self.moved: list[dict[str, Any]] = []
        self.dropped: list[int] = []
        self.put_back: list[int] = []

    def take(self, worker: str, batch: int, exclude: Collection[int]) -> list[Row[Any]]:
        """Claim the due rows and mark them fired, in one statement; them in firing order (due time, then id)."""
        rows = claim_due(self.session, now=self.now, worker=worker, batch=batch, exclude=exclude, fire=True)
        self.outcome.taken = len(rows)
        return rows

    def load(self, taken: Sequence[Row[Any]]) -> None:
        """Everything the decisions read, a few queries for the whole batch."""
        clock_ids = sorted({d.clock_id for d in taken})
        pg = self.dialect.name == "postgresql"
        self.clocks = {row.id: row for row in self.session.execute(_CLOCKS[pg], {"b_ids": clock_ids})}
        instance_ids = sorted({row.instance_id for row in self.clocks.values()})
        self.entries = entries_of(self.session, clock_ids)
        uuids = sorted({uuid for row in self.clocks.values() if (uuid := task_of(row.key, row.name))})
        if uuids:
            wanted = set(uuids)
            for row in sorted(self.session.execute(_TASKS[pg], {"b_ids": instance_ids}), key=lambda r: r.id):
                if row.task_uuid in wanted:
                    self.tasks.setdefault((row.instance_id, row.task_uuid), row)
        # this process's copy of the people tables, if still current (the stamp came with the clocks)
        first = next(iter(self.clocks.values()), None)
        self.people = Directory(self.session, people_as_of(self.session, first.people_stamp) if first else None)

    def decide(self, due: Row[Any]) -> None:
        """Fire, move or drop one taken row; a row whose decision raises is put back and reported."""
        try:
            self._decide(due)
        except sa.exc.SQLAlchemyError:
            raise  # the transaction is in doubt: the caller fires the batch row by row
        except Exception as err:
            log.exception("tick: sla_due %s failed", due.id)
            self.outcome.failed[due.id] = f"{type(err).__name__}: {err}"
            self.put_back.append(due.id)

    def _decide(self, due: Row[Any]) -> None:
        clock = self.clocks[due.clock_id]  # with its instance's columns (instance_id, status, data ...)
        definition = self._definition(clock.definition_version_id)
        calendar = self.calendars.get(clock.calendar)
        verdict = judge(definition, due, status=clock.status, calendar=calendar, entries=self.entries[clock.id],
                        warning=clock.warning_ratio, now=self.now)
        if verdict.level is None:
            if verdict.move_to is not None:
                self.moved.append({"b_id": due.id, "b_due_at": verdict.move_to})
            else:
                self.dropped.append(due.id)
            return
        level, figures, deadline = verdict.level, verdict.figures, verdict.deadline
        instance_id, data = clock.instance_id, clock.data
        uuid = task_of(clock.key, clock.name)
        task = self.tasks.get((instance_id, uuid)) if uuid else None
        holder = task.assignee if task is not None and task.status == "ready" else clock.assignee
        assert self.people is not None
        recipients, unreachable = self.people.resolve(level.notify, holder=holder,
                                                      team=task.team if task is not None else None)
        mails: list[dict[str, Any]] = []
        if recipients:
            customer = str(data["customer_name"]) if data.get("customer_name") else clock.customer_name
            about = item_of(data, instance_id=instance_id, workflow=clock.workflow, stage=clock.stage,
                            customer=customer, title=definition.meta.title, base_url=self.base_url)
            mails = escalation_mails(clock_id=clock.id, clock_title=clock.title, level=level, figures=figures,
                                     deadline=deadline, recipients=recipients, item=about,
                                     customer={"name": customer, "tier": clock.customer_tier},
                                     instance_id=instance_id, now=self.now)
        self.audit.append(level_audit(
            instance_id=instance_id, stage=clock.stage, row_version=clock.row_version, clock_id=clock.id,
            clock_name=clock.name, clock_title=clock.title, level=level, figures=figures, deadline=deadline,
            recipients=recipients, unreachable=unreachable, now=self.now))
        self.mails += mails
        self.outcome.fired[level.audit_kind] = self.outcome.fired.get(level.audit_kind, 0) + 1

    def _definition(self, version_id: int) -> LoadedDefinition:
        found = self.definitions.get(version_id)
        if found is None:
            found = self.definitions[version_id] = self.funnel.definitions.get(version_id)
        return found

    def write(self) -> None:
        """Put back, move and drop what did not fire; insert the audit entries and the e-mails."""
        pending = dict(fired_at=None, claimed_by=None, lease_until=None)
        if self.put_back:  # still claimed by this worker: retried once the lease runs out, like a failed row
            self.session.execute(sa.update(_DUE).where(among(_DUE.c.id, self.put_back, self.dialect))
                                 .values(fired_at=None))
        if self.moved:
            stmt = sa.update(_DUE).where(_DUE.c.id == sa.bindparam("b_id"))
            self.session.execute(stmt.values(due_at=sa.bindparam("b_due_at"), **pending), self.moved)
        if self.dropped:
            self.session.execute(sa.delete(_DUE).where(among(_DUE.c.id, self.dropped, self.dialect)))
        self.outcome.skipped = len(self.moved) + len(self.dropped)
        with pipeline(self.session):  # PostgreSQL: the audit entries and the e-mails go in one round trip
            if self.audit and self.dialect.name == "postgresql":
                insert_arrays(self.session, _AUDIT_ARRAYS, [{**a, "changes": pack(a["changes"])} for a in self.audit])
            elif self.audit:
                self.session.execute(sa.insert(_AUDIT), self.audit)
            self.outcome.emails = enqueue_many(self.session, self.mails)

"""SLA clocks kept in step with every instance change: a ChangeListener, inside the change's transaction.

For each change it (1) holds newly armed SpiffWorkflow timers on the engine's clock and keeps
`instance.next_due_at` at the earliest waiting timer, and (2) for workflows with a `funnel:sla`
policy appends ledger events (engine.sla_ledger) to their clocks - start (or restart: a new cycle),
pause while waiting on the customer, resume, stop, retarget when the tier or data change the
target - and re-derives each touched clock's deadline and its pending escalation rows (`sla_due`).
The ticker (engine.ticker) fires those rows; a stopped clock's pending rows are deleted here, so a
fulfilled clock never escalates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col

from engine import sla_ledger as ledger
from engine.db import among_param
from engine.instances import RUNNING, ChangeEvent
from engine.models import HumanTask, Instance
from engine.models.sla import SlaClock, SlaClockEvent, SlaDue, key_of, task_of_clock
from engine.sla_policy import Calendars, ClockSpec, SlaPolicy, target_of
from engine.spiff import Workflow, arm_timers, pending_timers
from engine.writes import row_object

SYSTEM_ACTOR = "system:sla"


class SlaListener:
    """Keeps timers, SLA clocks and pending escalations in step with each change of an instance."""

    def __init__(self, workflows_dir: Path | None = None, *, calendars: Calendars | None = None) -> None:
        self.calendars = calendars or (Calendars.beside(workflows_dir) if workflows_dir else Calendars())

    def after_change(self, event: ChangeEvent) -> None:
        keep_timers(event)
        policy = event.definition.meta.sla
        if policy is not None and event.instance.id is not None:
            _Sync(self, event, policy).run()


def keep_timers(event: ChangeEvent) -> None:
    """Hold timers Spiff armed on its own clock (due from the change's `now`); next_due_at = the earliest."""
    row = event.instance
    specs = event.definition.specs
    pending = pending_timers(row.state, specs)
    values: dict[str, Any] = {}
    if any(p.due_at is None for p in pending):
        workflow = Workflow.restore(specs, row.state)
        arm_timers(workflow, event.now)
        values["state"] = workflow.state()
        pending = pending_timers(values["state"], specs)
    due = min((p.due_at for p in pending if p.due_at is not None), default=None) if row.status == RUNNING else None
    if due != row.next_due_at:
        values["next_due_at"] = due
    if values and row.id is not None:
        event.session.execute(sa.update(Instance).where(col(Instance.id) == row.id).values(**values)
                              .execution_options(synchronize_session=False))
        for key, value in values.items():
            set_committed_value(row, key, value)


# ---------------------------------------------------------------- the ledger of one change


@dataclass
class _Sync:
    """Applies one change to the instance's clocks: starts, stops, pauses, retargets, then due rows."""

    listener: SlaListener
    event: ChangeEvent
    policy: SlaPolicy
    clocks: dict[str, SlaClock] = field(default_factory=dict)
    touched: dict[str, SlaClock] = field(default_factory=dict)
    started: set[str] = field(default_factory=set)
    appended: list[tuple[SlaClock, SlaClockEvent]] = field(default_factory=list)

    def run(self) -> None:
        """Decide every ledger event in memory, derive the figures, then write it all with bulk statements.

        Clocks are read and written with set-based statements (no unit-of-work flush): this runs inside every
        change of every instance, so its round trips are most of what an advance costs beyond the workflow.
        """
        session, row = self.event.session, self.event.instance
        reopened = [t.task_uuid for t in self.event.opened_tasks]
        found = session.connection().execute(_CLOCKS_THAT_CAN_CHANGE, {"b_instance": row.id, "b_reopened": reopened})
        stored: dict[str, list[ledger.Entry]] = {}
        for r in found:
            if r.key not in self.clocks:
                self.clocks[r.key] = row_object(SlaClock, {c.name: r._mapping[c] for c in _CLOCK.c})
                stored[r.key] = []
            if r.e_kind is not None:
                stored[r.key].append(ledger.Entry(r.e_kind, r.e_at, r.e_cycle, _target(r.e_target)))
        self._starts()
        self._stops()
        self._pauses()
        self._retargets()
        if not self.touched:
            return
        ledgers = {key: stored.get(key, []) for key in self.touched}  # a new clock has no ledger yet
        for clock, entry in self.appended:
            ledgers[clock.key].append(ledger.Entry(entry.kind, entry.at, entry.cycle, _target(entry.target_seconds)))
        wanted = {key: derive_due(clock, ledgers[key], self.policy, self.listener.calendars, now=self.event.now)
                  for key, clock in self.touched.items()}
        known = {c.id for c in self.touched.values() if c.id is not None}
        _write_clocks(session, list(self.touched.values()))
        rows = [{**entry.model_dump(exclude={"id"}), "clock_id": clock.id} for clock, entry in self.appended]
        session.connection().execute(_INSERT_EVENT, rows)  # one executemany: the ledger needs no ids back
        sync_due(session, [(c, c.cycle, wanted[k], c.id in known) for k, c in self.touched.items()])

    def _starts(self) -> None:
        event = self.event
        for spec in self.policy.clocks:
            if spec.per == "instance" and event.kind == "created" and "created" in spec.start:
                self._start(spec, key_of(spec.name, None), spec.title, None, "created")
        for task in event.opened_tasks:
            plain = _plain(task.task_spec)
            for spec in self.policy.clocks:
                if spec.counts_task(task.task_spec):
                    self._start(spec, key_of(spec.name, task.task_uuid), f"{spec.title}: {_suffix(task)}", task,
                                f"task opened: {task.name}")
                elif spec.per == "instance" and f"opened:{plain}" in spec.start:
                    self._start(spec, key_of(spec.name, None), spec.title, None, f"task opened: {task.name}")

    def _stops(self) -> None:
        event, row = self.event, self.event.instance
        for task in event.closed_tasks:
            for spec in self.policy.clocks:
                if spec.counts_task(task.task_spec):
                    self._stop(key_of(spec.name, task.task_uuid), f"task {task.status}: {task.name}")
                elif (spec.per == "instance" and task.status == "completed"
                      and f"completed:{_plain(task.task_spec)}" in spec.stop):
                    self._stop(key_of(spec.name, None), f"task completed: {task.name}")
        if row.status != RUNNING:
            for key in list(self.clocks):
                self._stop(key, f"instance {row.status}")

    def _pauses(self) -> None:
        waiting = "waiting" in self.policy.pause and self.event.instance.waiting_since is not None
        for clock in self.clocks.values():
            if clock.status == ledger.RUNNING and waiting:
                self._append(clock, ledger.PAUSE, "waiting on the customer")
            elif clock.status == ledger.PAUSED and not waiting:
                self._append(clock, ledger.RESUME, "wait on the customer ended")

    def _retargets(self) -> None:
        event, row = self.event, self.event.instance
        if event.kind != "tier_changed" and event.data_before == row.data and event.from_stage == row.stage:
            return
        for key, clock in self.clocks.items():
            spec = self.policy.clock(clock.name)
            if key in self.started or clock.status == ledger.STOPPED or spec is None:
                continue
            target, why = self._target(spec, clock.stage)
            seconds = None if target is None else target.total_seconds()
            if seconds != clock.target_seconds:
                before = "none" if clock.target_seconds is None else f"{clock.target_seconds / 3600:g} h"
                after = "none" if seconds is None else f"{seconds / 3600:g} h"
                self._append(clock, ledger.RETARGET, f"target {before} -> {after} ({event.kind})", target=seconds,
                             detail=why)

    # ------------------------------------------------------------ single steps

    def _start(self, spec: ClockSpec, key: str, title: str, task: HumanTask | None, reason: str) -> None:
        now = self.event.now
        clock = self.clocks.get(key)
        if clock is not None and clock.status != ledger.STOPPED:
            return
        stage = task.stage if task is not None else None
        target, why = self._target(spec, stage)
        seconds = None if target is None else target.total_seconds()
        if clock is None:
            clock = row_object(SlaClock, dict(
                id=None, instance_id=self.event.instance.id or 0, key=key, name=spec.name, title=title[:300],
                stage=stage, calendar=self.policy.calendar,
                warning_ratio=self.policy.warning, cycle=1, status=ledger.RUNNING, target_seconds=seconds,
                started_at=now, stopped_at=None, deadline_at=None, warning_at=None, updated_at=now))
            self.clocks[key] = clock
        else:
            clock.cycle += 1
            reason = f"restarted ({reason}); cycle {clock.cycle - 1} is kept as history"
            clock.started_at, clock.stopped_at = now, None
        self.started.add(key)
        self._append(clock, ledger.START, reason, target=seconds, detail=why)

    def _stop(self, key: str, reason: str) -> None:
        clock = self.clocks.get(key)
        if clock is not None and clock.status != ledger.STOPPED:
            self._append(clock, ledger.STOP, reason)

    def _append(self, clock: SlaClock, kind: str, reason: str, *, target: float | None = None,
                detail: dict[str, Any] | None = None) -> None:
        event = self.event
        if kind in (ledger.START, ledger.RETARGET):
            clock.target_seconds = target
        clock.status = {ledger.PAUSE: ledger.PAUSED, ledger.STOP: ledger.STOPPED}.get(kind, ledger.RUNNING)
        stopped = event.now if kind == ledger.STOP else None
        if clock.stopped_at != stopped:
            clock.stopped_at = stopped
        clock.updated_at = event.now
        self.appended.append((clock, row_object(SlaClockEvent, dict(
            clock_id=clock.id or 0, at=event.now, kind=kind, cycle=clock.cycle,
            target_seconds=clock.target_seconds, actor=event.actor, reason=reason, detail=detail or {}))))
        self.touched[clock.key] = clock

    def _target(self, spec: ClockSpec, stage: str | None) -> tuple[timedelta | None, dict[str, Any]]:
        row = self.event.instance
        names = {**row.data, "customer_tier": row.customer_tier, "workflow": row.workflow, "clock": spec.name,
                 "stage": stage or row.stage}
        target, why = target_of(self.policy, self.event.definition.dmn, names)
        return target, {**why, "customer_tier": row.customer_tier, "priority": row.data.get("priority")}


def _plain(task_spec: str) -> str:
    return task_spec.removesuffix(" [child]")


def _suffix(task: HumanTask) -> str:
    """What a per-task clock is about: a multi-instance item (a department) or the task's stage."""
    _, _, item = task.name.partition(": ")
    return item or task.stage or task.name


_CLOCK: sa.Table = SlaClock.__table__  # type: ignore[attr-defined]
_EVENT: sa.Table = SlaClockEvent.__table__  # type: ignore[attr-defined]
_DUE: sa.Table = SlaDue.__table__  # type: ignore[attr-defined]
_CLOCK_STATE = ("cycle", "status", "target_seconds", "started_at", "stopped_at", "deadline_at", "warning_at",
                "updated_at")
# The clocks a change may touch, each with its ledger (one row per entry; a clock without entries once): one
# round trip instead of two. A stopped per-task clock restarts only with its task.
_CLOCKS_THAT_CAN_CHANGE = (
    sa.select(_CLOCK, _EVENT.c.kind.label("e_kind"), _EVENT.c.at.label("e_at"), _EVENT.c.cycle.label("e_cycle"),
              _EVENT.c.target_seconds.label("e_target"))
    .select_from(_CLOCK.outerjoin(_EVENT, _EVENT.c.clock_id == _CLOCK.c.id))
    .where(_CLOCK.c.instance_id == sa.bindparam("b_instance"),
           sa.or_(_CLOCK.c.status != ledger.STOPPED, _CLOCK.c.key == _CLOCK.c.name,
                  task_of_clock().in_(sa.bindparam("b_reopened", expanding=True))))
    .order_by(_CLOCK.c.id, _EVENT.c.id))
_INSERT_CLOCK = sa.insert(_CLOCK).returning(_CLOCK.c.id)
_INSERT_EVENT = sa.insert(_EVENT)
# by dialect (PostgreSQL?): on PostgreSQL the ids go as one array (engine.db.among says why); a ticker batch reads
# hundreds of ledgers at once
_ENTRIES = {pg: sa.select(_EVENT.c.clock_id, _EVENT.c.kind, _EVENT.c.at, _EVENT.c.cycle, _EVENT.c.target_seconds)
            .where(among_param(_EVENT.c.clock_id, "b_ids", postgres=pg)).order_by(_EVENT.c.id) for pg in (False, True)}
_DUE_OF = (sa.select(_DUE.c.id, _DUE.c.clock_id, _DUE.c.cycle, _DUE.c.level, _DUE.c.due_at, _DUE.c.fired_at)
           .where(_DUE.c.clock_id.in_(sa.bindparam("b_ids", expanding=True))))
_INSERT_DUE = sa.insert(_DUE)
_MOVE_DUE = (sa.update(_DUE).where(_DUE.c.id == sa.bindparam("b_id"), _DUE.c.fired_at.is_(None))
             .values(due_at=sa.bindparam("b_due_at"), claimed_by=None, lease_until=None))
_DROP_DUE = sa.delete(_DUE).where(_DUE.c.id.in_(sa.bindparam("b_ids", expanding=True)), _DUE.c.fired_at.is_(None))
_DROP_CLOCK_DUE = sa.delete(_DUE).where(_DUE.c.clock_id.in_(sa.bindparam("b_ids", expanding=True)),
                                        _DUE.c.fired_at.is_(None))
_UPDATE_CLOCK = (sa.update(_CLOCK).where(_CLOCK.c.id == sa.bindparam("b_id"))
                 .values({name: sa.bindparam(f"b_{name}") for name in _CLOCK_STATE}))


def _write_clocks(session: Session, clocks: Sequence[SlaClock]) -> None:
    """Store changed clocks (one executemany) and insert new ones, setting their ids."""
    changed = [{"b_id": c.id, **{f"b_{name}": getattr(c, name) for name in _CLOCK_STATE}}
               for c in clocks if c.id is not None]
    conn = session.connection()
    if changed:
        conn.execute(_UPDATE_CLOCK, changed)
    for clock in clocks:
        if clock.id is None:
            clock.id = conn.execute(_INSERT_CLOCK, clock.model_dump(exclude={"id"})).scalar_one()


# ---------------------------------------------------------------- derived figures and due rows


def entries_of(session: Session, clock_ids: Iterable[int]) -> dict[int, list[ledger.Entry]]:
    """The ledgers of some clocks, in the order they were written."""
    ids = list(clock_ids)
    out: dict[int, list[ledger.Entry]] = {i: [] for i in ids}
    if not ids:
        return out
    conn = session.connection()
    for clock_id, kind, at, cycle, seconds in conn.execute(_ENTRIES[conn.dialect.name == "postgresql"],
                                                           {"b_ids": ids}):
        out[clock_id].append(ledger.Entry(kind, at, cycle, _target(seconds)))
    return out


def _target(seconds: float | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def derive_due(clock: SlaClock, entries: Sequence[ledger.Entry], policy: SlaPolicy, calendars: Calendars, *,
               now: datetime) -> dict[str, tuple[int, datetime]]:
    """Cache the clock's deadline and warning; return when each escalation level falls due (level -> severity, due)."""
    calendar = calendars.get(clock.calendar)
    figures = ledger.derive(calendar, entries, now=now, warning=clock.warning_ratio)
    clock.deadline_at, clock.warning_at = figures.deadline, figures.warning_at
    wanted: dict[str, tuple[int, datetime]] = {}
    if figures.status != ledger.STOPPED and figures.target is not None:
        running = ledger.spans(entries, figures.cycle)
        for level in policy.levels:
            when = ledger.reached(calendar, running, level.threshold(figures.target, clock.warning_ratio))
            if when is not None:
                wanted[level.name] = (level.severity, when)
    return wanted


@dataclass(frozen=True)
class _Due:
    id: int
    due_at: datetime
    fired_at: datetime | None


def sync_due(session: Session, plans: Sequence[tuple[SlaClock, int, dict[str, tuple[int, datetime]], bool]]) -> None:
    """Each clock's pending rows of its cycle become exactly `wanted` (level -> severity, due); fired rows never
    change; pending rows of earlier cycles go. `plans`: (clock, cycle, wanted, may already have rows)."""
    conn = session.connection()
    # a known clock that wants nothing (stopped) loses all its pending rows: no need to read them first
    drop_all = [clock.id for clock, _, wanted, known in plans if known and not wanted and clock.id is not None]
    ids = [clock.id for clock, _, wanted, known in plans if known and wanted and clock.id is not None]
    existing: dict[tuple[int, int, str], _Due] = {}
    if ids:
        for found in conn.execute(_DUE_OF, {"b_ids": ids}):
            existing[(found.clock_id, found.cycle, found.level)] = _Due(found.id, found.due_at, found.fired_at)
    gone: list[int] = []
    added: list[dict[str, Any]] = []
    moved: list[dict[str, Any]] = []
    for clock, cycle, wanted, _ in plans:
        assert clock.id is not None
        for level, (severity, due_at) in wanted.items():
            row = existing.get((clock.id, cycle, level))
            if row is None:
                added.append(dict(clock_id=clock.id, cycle=cycle, level=level, severity=severity, due_at=due_at))
            elif row.fired_at is None and row.due_at != due_at:
                moved.append({"b_id": row.id, "b_due_at": due_at})
        gone += [r.id for (cid, c, lv), r in existing.items()
                 if cid == clock.id and r.fired_at is None and (c != cycle or lv not in wanted)]
    if moved:
        conn.execute(_MOVE_DUE, moved)
    if added:
        conn.execute(_INSERT_DUE, added)
    if gone:
        conn.execute(_DROP_DUE, {"b_ids": gone})
    if drop_all:
        conn.execute(_DROP_CLOCK_DUE, {"b_ids": drop_all})

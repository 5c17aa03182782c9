"""The orchestration layer every instance state change passes: start, advance, move back or skip.

Each change is computed in memory first (criteria, SpiffWorkflow step, new columns); only when it
is complete is it written, in one transaction that begins with the optimistic-concurrency UPDATE
(`WHERE row_version = expected`), so two writers never both win and a refusal writes nothing.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from threading import Lock
from typing import Any, Protocol

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import audit_text, holds, sandbox, writes
from engine.clock import utcnow
from engine.customers import for_instance
from engine.data import merge_for_criteria, validate_data
from engine.db import WriteTurn, read_session
from engine.definitions import DefinitionStore, LoadedDefinition
from engine.errors import Conflict, ExpressionError, InvalidInput, NotFound, TransitionRefused, WorkflowFailed
from engine.models import AuditEvent, HumanTask, Instance
from engine.spiff import SpiffError, Workflow, arm_timers, task_label
from engine.spiff import cancel as cancel_workflow
from engine.stages import Stage, unmet_criteria
from engine.views import InstanceView, TaskView, instance_view

_OPEN_TASKS_KEY = "funnel.open_tasks"
RUNNING = "running"
COMPLETED = "completed"


class WorkflowCache:
    """Recently written workflows by (instance, row version), so the next change skips deserializing.

    An entry is taken out while a change uses it and put back only after that change committed:
    two threads never share one object, and a failed change never leaves a half-run workflow behind.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict[int, tuple[int, Workflow]] = OrderedDict()
        self._lock = Lock()

    def take(self, instance_id: int, row_version: int) -> Workflow | None:
        with self._lock:
            hit = self._items.pop(instance_id, None)
        return hit[1] if hit is not None and hit[0] == row_version else None

    def put(self, instance_id: int, row_version: int, wf: Workflow) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._items[instance_id] = (row_version, wf)
            self._items.move_to_end(instance_id)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


@dataclass
class _Change:
    """A computed, not yet written, change of one instance."""

    kind: str
    actor: str
    now: datetime
    workflow: Workflow
    before: dict[str, Any]
    from_stage: str | None
    completed_task: str | None = None
    reason: str | None = None
    status: str | None = None  # overrides the status derived from the workflow (closed_early)


@dataclass
class ChangeEvent:
    """What a listener is told, inside the writing transaction, after an instance changed."""

    funnel: Funnel
    session: Session
    instance: Instance
    definition: LoadedDefinition
    kind: str  # created | advanced | moved_back | skipped | tier_changed (engine.customers)
    #            | waiting_started | waiting_ended | closed_early (engine.holds)
    actor: str
    now: datetime
    from_stage: str | None
    data_before: dict[str, Any]
    opened_tasks: list[HumanTask] = field(default_factory=list)
    closed_tasks: list[HumanTask] = field(default_factory=list)


# Runs on the loaded row and its open tasks (id, assignee, team) before anything else; raises to refuse (the API
# passes its permission check: engine.permissions.guard).
Guard = Callable[[Instance, tuple[writes.OpenTask, ...]], None]


class ChangeListener(Protocol):
    """Assignment, SLA clocks and linked instances react to changes in the same transaction."""

    def after_change(self, event: ChangeEvent) -> None: ...


class Funnel:
    """Start and move instances; the API and CLI call only this."""

    def __init__(self, engine: Engine, definitions: DefinitionStore,
                 clock: Callable[[], datetime] = utcnow,
                 listeners: Sequence[ChangeListener] = (), workflow_cache_size: int = 512) -> None:
        self.engine = engine
        self.definitions = definitions
        self.clock = clock
        self.listeners = list(listeners)
        self.workflows = WorkflowCache(workflow_cache_size)
        self.write_turn = WriteTurn(engine)  # SQLite: writers queue instead of sleeping in the busy handler

    # ------------------------------------------------------------ reads

    def get(self, instance_id: int) -> InstanceView:
        with read_session(self.engine) as session:
            row = self._row(session, instance_id)
            return instance_view(row, self._open_tasks(session, instance_id))

    def history(self, instance_id: int) -> list[AuditEvent]:
        with read_session(self.engine) as session:
            self._row(session, instance_id)
            stmt = select(AuditEvent).where(AuditEvent.instance_id == instance_id).order_by(col(AuditEvent.id))
            return audit_text.readable(session.exec(stmt))

    def open_tasks(self, instance_id: int) -> list[TaskView]:
        with read_session(self.engine) as session:
            self._row(session, instance_id)
            return [TaskView.of(t) for t in self._open_tasks(session, instance_id)]

    # ------------------------------------------------------------ writes

    def start(self, workflow: str, data: Mapping[str, Any], *, actor: str,
              customer_id: int | None = None, customer_tier: str | None = None,
              assignee: str | None = None, waiting: bool = False,
              waiting_reason: str | None = None) -> InstanceView:
        """Create an instance on the newest version at its first stage, audited; `waiting`: already on hold."""
        with self.write_turn, Session(self.engine) as session:
            row = self.start_in(session, workflow, data, actor=actor, customer_id=customer_id,
                                customer_tier=customer_tier, assignee=assignee)
            if waiting:
                self._start_waiting_in(session, row, waiting=waiting, actor=actor, reason=waiting_reason)
            session.commit()
            assert row.id is not None
            return instance_view(row, self._open_tasks(session, row.id))

    def start_in(self, session: Session, workflow: str, data: Mapping[str, Any], *, actor: str,
                 customer_id: int | None = None, customer_tier: str | None = None,
                 assignee: str | None = None) -> Instance:
        """Like `start`, inside the caller's transaction (e.g. a won deal starting its project)."""
        clean = validate_data(data)
        if customer_tier is not None and customer_tier not in ("A", "B", "C", "D"):
            raise InvalidInput(f"customer_tier must be one of A, B, C, D, not {customer_tier!r}", "customer_tier")
        clean, customer_tier = for_instance(session, clean, customer_id=customer_id, customer_tier=customer_tier)
        definition = self.definitions.latest(workflow)
        now = self.clock()
        try:
            wf = Workflow.start(definition.specs, {**clean, "customer_tier": customer_tier})
        except SpiffError as err:
            raise WorkflowFailed(str(err)) from err
        row = Instance(
            workflow=definition.workflow, definition_version_id=definition.id, status=RUNNING,
            assignee=assignee or actor, customer_id=customer_id, customer_tier=customer_tier,
            state=wf.state(), created_by=actor, created_at=now, updated_at=now,
        )
        self.apply_columns(row, definition, wf)
        session.add(row)
        session.flush()
        assert row.id is not None
        opened, closed = self.sync_tasks(session, row, definition, wf, now=now, actor=actor, completed=None)
        session.add(AuditEvent(
            instance_id=row.id, at=now, actor=actor, kind="created", from_stage=None, to_stage=row.stage,
            changes=_diff({}, row.data), row_version=row.row_version,
        ))
        self._notify(ChangeEvent(self, session, row, definition, "created", actor, now, None, {},
                                 opened, closed))
        return row

    def advance(self, instance_id: int, data: Mapping[str, Any], *, actor: str,
                expected_version: int | None = None, task_id: str | None = None,
                guard: Guard | None = None) -> InstanceView:
        """Complete the current stage if every exit criterion holds; else refuse listing all unmet."""
        row, definition, wf = self._load(instance_id, expected_version, guard=guard)  # the guard first: 403 before 422
        clean = validate_data(data)
        task = self._current_task(wf, task_id)
        stage = definition.meta.stage_for_task(task.task_spec.name)
        before = wf.data()
        names = merge_for_criteria(before, clean, customer_tier=row.customer_tier)
        unmet = unmet_criteria(stage.criteria if stage else (), names)
        if unmet:
            label = stage.name if stage else task.task_spec.name
            raise TransitionRefused(f"cannot leave stage '{label}': {len(unmet)} criterion(s) not met", unmet)
        change = _Change("advanced", actor, self.clock(), wf, before, row.stage, completed_task=str(task.id))
        self._run(lambda: wf.complete(task, {**clean, "customer_tier": row.customer_tier}))
        return self._write(row, definition, change)

    def move(self, instance_id: int, to_stage: str, *, actor: str, reason: str | None,
             data: Mapping[str, Any] | None = None, expected_version: int | None = None,
             guard: Guard | None = None) -> InstanceView:
        """Go back to an earlier stage or skip ahead, as the definition's policy allows, with a reason."""
        row, definition, wf = self._load(instance_id, expected_version, guard=guard)
        clean = validate_data(data or {})
        meta = definition.meta
        target = meta.stage_named(to_stage)
        if target is None:
            known = ", ".join(s.name for s in meta.stages)
            raise InvalidInput(f"'{to_stage}' is not a stage of {meta.title}; stages: {known}", "to_stage")
        current = meta.stage_for_task(self._current_task(wf, None).task_spec.name)
        assert current is not None
        kind, policy = _move_kind(current, target, meta.backward, meta.skip)
        if policy != "with-reason":
            raise TransitionRefused(
                f"{meta.title} does not allow {'going back' if kind == 'moved_back' else 'skipping'} "
                f"from '{current.name}' to '{target.name}'"
            )
        if not (reason or "").strip():
            raise InvalidInput(f"moving from '{current.name}' to '{target.name}' needs a reason", "reason")
        change = _Change(kind, actor, self.clock(), wf, wf.data(), row.stage, reason=(reason or "").strip())
        if kind == "moved_back":
            self._run(lambda: wf.reset_to(target.task, clean))
        else:
            self._skip_to(wf, definition, target, clean, row.customer_tier)
        return self._write(row, definition, change)

    def set_waiting(self, instance_id: int, *, waiting: bool, actor: str, reason: str | None,
                    expected_version: int | None = None, guard: Guard | None = None) -> InstanceView:
        """Enter or leave 'waiting on the customer' (SLA clocks pause), where the definition allows it."""
        row, definition, wf = self._load(instance_id, expected_version, finished="it cannot wait on the customer",
                                         guard=guard)
        kind, text = holds.waiting_change(row, definition.meta, waiting=waiting, reason=reason)
        now = self.clock()
        row.waiting_since = now if waiting else None
        return self._write(row, definition, _Change(kind, actor, now, wf, wf.data(), row.stage, reason=text))

    def close_early(self, instance_id: int, *, actor: str, reason: str | None,
                    expected_version: int | None = None, guard: Guard | None = None) -> InstanceView:
        """Close with tasks still open (cancelled, listed as `unanswered`), where the definition allows it."""
        row, definition, wf = self._load(instance_id, expected_version, finished="there is nothing to close",
                                         guard=guard)
        text = holds.close_reason(definition.meta, reason)
        before = wf.data()
        self._run(lambda: cancel_workflow(wf, record_open_as=holds.UNANSWERED))
        return self._write(row, definition, _Change(holds.CLOSED_EARLY, actor, self.clock(), wf, before, row.stage,
                                                    reason=text, status=holds.CLOSED_EARLY))

    # ------------------------------------------------------------ internals

    def _start_waiting_in(self, session: Session, row: Instance, *, waiting: bool, actor: str,
                          reason: str | None) -> None:
        """Put a just-created instance on hold in its creating transaction: one version, two audit entries."""
        definition = self.definitions.get(row.definition_version_id)
        kind, text = holds.waiting_change(row, definition.meta, waiting=waiting, reason=reason)
        row.waiting_since = now = self.clock()
        session.add(row)
        session.add(holds.waiting_started_event(row, now=now, actor=actor, reason=text or ""))
        self._notify(ChangeEvent(self, session, row, definition, kind, actor, now, row.stage, dict(row.data)))

    def _load(self, instance_id: int, expected: int | None, *, finished: str = "it has no stage to move",
              guard: Guard | None = None) -> tuple[Instance, LoadedDefinition, Workflow]:
        if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)):
            raise InvalidInput("expected_version must be a whole number", "expected_version")
        _check_id(instance_id)
        open_tasks: tuple[writes.OpenTask, ...] = ()
        with read_session(self.engine) as session:
            if guard is None:
                found = writes.load_instance(session, instance_id)
            else:
                found, open_tasks = writes.load_instance_open(session, instance_id)
        if found is None:
            raise NotFound(f"instance {instance_id} does not exist")
        row = found
        if guard is not None:
            guard(row, open_tasks)  # on the very version the change will be written over (no stale check)
        if expected is not None and expected != row.row_version:
            raise Conflict(
                f"instance {instance_id} is at version {row.row_version}, not {expected}: reload it and retry",
                current_version=row.row_version,
            )
        if row.status != RUNNING:
            raise Conflict(f"instance {instance_id} is {row.status}; {finished}",
                           current_version=row.row_version)
        definition = self.definitions.get(row.definition_version_id)
        assert row.id is not None
        wf = self.workflows.take(row.id, row.row_version)
        return row, definition, wf or Workflow.restore(definition.specs, row.state)

    @staticmethod
    def _current_task(wf: Workflow, task_id: str | None) -> Any:
        ready = wf.ready_human_tasks()
        if task_id is not None:
            match = [t for t in ready if str(t.id) == str(task_id)]
            if not match:
                raise NotFound(f"task {task_id} is not open on this instance")
            return match[0]
        if not ready:
            raise Conflict("the instance has no open task to complete")
        if len(ready) > 1:
            ids = ", ".join(f"{t.id} ({task_label(t)})" for t in ready)
            raise InvalidInput(f"several tasks are open; say which with task_id: {ids}", "task_id")
        return ready[0]

    def _skip_to(self, wf: Workflow, definition: LoadedDefinition, target: Stage,
                 data: dict[str, Any], tier: str | None) -> None:
        for _ in range(len(definition.meta.stages) + 1):
            task = self._current_task(wf, None)
            if task.task_spec.name == target.task:
                return
            self._run(partial(wf.complete, task, {**data, "customer_tier": tier}))
        raise TransitionRefused(f"could not reach stage '{target.name}' by skipping ahead")

    @staticmethod
    def _run(action: Callable[[], Any]) -> None:
        try:
            action()
        except SpiffError as err:
            raise WorkflowFailed(str(err)) from err

    def apply_columns(self, row: Instance, definition: LoadedDefinition, wf: Workflow) -> None:
        """Derive the denormalised columns (stage, status, amount, probability) from the workflow."""
        meta = definition.meta
        data = wf.data()
        data.pop("customer_tier", None)
        row.data = data
        stages = [s for t in wf.ready_human_tasks() if (s := meta.stage_for_task(t.task_spec.name))]
        if stages:
            current = min(stages, key=lambda s: s.order)
            row.stage, row.stage_order, row.probability = current.name, current.order, current.probability
            row.status = RUNNING
        elif wf.completed:
            end = wf.end_event()
            outcome = meta.outcome_for(end) if end else None
            row.status = outcome.status if outcome else COMPLETED
            if outcome and outcome.probability is not None:
                row.probability = outcome.probability
        row.amount = _amount(meta.amount, data)

    def _write(self, row: Instance, definition: LoadedDefinition, change: _Change) -> InstanceView:
        assert row.id is not None
        expected = row.row_version
        self.apply_columns(row, definition, change.workflow)
        row.status = change.status or row.status
        ended_wait = holds.end_wait(row, change.kind)
        arm_timers(change.workflow, change.now)  # new Spiff timers run on our clock, fired by engine.ticker only
        row.state = change.workflow.state()
        with self.write_turn, Session(self.engine, expire_on_commit=False) as session:
            if not writes.update_instance(session, row, expected=expected, now=change.now):
                session.rollback()
                current = session.get(Instance, row.id)
                version = current.row_version if current else None
                raise Conflict(
                    f"instance {row.id} was changed by someone else (now at version {version}); "
                    "reload it and retry",
                    current_version=version,
                )
            row.row_version, row.updated_at = expected + 1, change.now
            opened, closed = self.sync_tasks(session, row, definition, change.workflow, now=change.now,
                                              actor=change.actor, completed=change.completed_task)
            if ended_wait:
                ended = holds.wait_ended_event(row, kind=change.kind, now=change.now, actor=change.actor,
                                               stage=change.from_stage)
                writes.insert_audit(session, ended.model_dump(exclude={"id"}))
            writes.insert_audit(session, dict(
                instance_id=row.id, at=change.now, actor=change.actor, kind=change.kind,
                from_stage=change.from_stage, to_stage=row.stage if row.status == RUNNING else row.status,
                changes=_diff(change.before, row.data), reason=change.reason, row_version=row.row_version,
            ))
            self._notify(ChangeEvent(self, session, row, definition, change.kind, change.actor, change.now,
                                     change.from_stage, change.before, opened, closed))
            session.commit()
            view = instance_view(row, self._open_tasks(session, row.id))
        self.workflows.put(row.id, row.row_version, change.workflow)
        return view

    @staticmethod
    def sync_tasks(session: Session, row: Instance, definition: LoadedDefinition, wf: Workflow, *,
                    now: datetime, actor: str, completed: str | None) -> tuple[list[HumanTask], list[HumanTask]]:
        """Mirror the ready user tasks into human_task rows; return the (opened, closed) rows."""
        assert row.id is not None
        ready = {str(t.id): t for t in wf.ready_human_tasks()}
        opened: list[HumanTask] = []
        closed: list[HumanTask] = []
        still_open: list[HumanTask] = []
        for task in writes.open_tasks(session, row.id):
            if ready.pop(task.task_uuid, None) is not None:
                still_open.append(task)
            else:
                closed.append(task)
        writes.close_tasks(session, closed, now=now, completed=completed, actor=actor)
        for uuid, task in ready.items():
            stage = definition.meta.stage_for_task(task.task_spec.name)
            opened.append(writes.row_object(HumanTask, dict(
                instance_id=row.id, task_uuid=uuid, task_spec=task.task_spec.name,
                name=task_label(task)[:300],
                stage=stage.name if stage else None, lane=stage.lane if stage else None,
                role=stage.role if stage else None, status="ready", assignee=row.assignee, created_at=now,
            )))
        writes.insert_tasks(session, opened)
        session.info.setdefault(_OPEN_TASKS_KEY, {})[row.id] = still_open + opened
        return opened, closed

    def _notify(self, event: ChangeEvent) -> None:
        for listener in self.listeners:
            listener.after_change(event)

    @staticmethod
    def _row(session: Session, instance_id: int) -> Instance:
        _check_id(instance_id)
        row = session.get(Instance, instance_id)
        if row is None:
            raise NotFound(f"instance {instance_id} does not exist")
        return row

    @staticmethod
    def _open_tasks(session: Session, instance_id: int) -> list[HumanTask]:
        """Open tasks as this session knows them (no query when the change just loaded them all)."""
        known = session.info.get(_OPEN_TASKS_KEY, {}).get(instance_id)
        if known is not None:
            return sorted((t for t in known if t.status == "ready"), key=lambda t: t.id or 0)
        stmt = select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == "ready")
        return list(session.exec(stmt.order_by(col(HumanTask.id))))


def _check_id(instance_id: Any) -> None:
    if not isinstance(instance_id, int) or isinstance(instance_id, bool):
        raise InvalidInput("instance id must be a whole number", "instance_id")


def _move_kind(current: Stage, target: Stage, backward: str, skip: str) -> tuple[str, str]:
    if target.order < current.order:
        return "moved_back", backward
    if target.order == current.order:
        raise TransitionRefused(f"the instance is already in stage '{current.name}'")
    if target.order == current.order + 1:
        raise TransitionRefused(
            f"'{target.name}' is the next stage: advance to it (its criteria apply) instead of skipping"
        )
    return "skipped", skip


def _amount(expression: str | None, data: Mapping[str, Any]) -> float | None:
    if not expression:
        return None
    try:
        value = sandbox.evaluate(expression, data, missing_as_none=True)
    except ExpressionError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        amount = float(value)
    except OverflowError:  # a whole number beyond float range is no amount we can list or sum
        return None
    return amount if math.isfinite(amount) else None


def _diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Fields changed, as {field: {"from": old, "to": new}} (absent fields are null)."""
    keys = sorted(set(before) | set(after))
    return {k: {"from": before.get(k), "to": after.get(k)} for k in keys if before.get(k) != after.get(k)}

"""The one adapter around SpiffWorkflow 3.2.0: parse, start, ready tasks, complete, reset, timers, serialize.

Nothing else in the project imports SpiffWorkflow except the sandbox (which must subclass its
script environment). Contract tests in tests/engine/test_spiff.py pin the behaviour we rely on.

Serialized state deliberately leaves the process spec out (`spec`, `subprocess_specs`): a spec is
stored once per definition version, not repeated in every instance, and restored from a cache.
"""

from __future__ import annotations

import ast
import functools
import json
from collections.abc import Callable, Iterable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter, WorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.specs.event_definitions.timer import (
    DurationTimerEventDefinition,
    TimeDateEventDefinition,
    TimerEventDefinition,
)
from SpiffWorkflow.bpmn.specs.mixins.multiinstance_task import MultiInstanceTask
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
from SpiffWorkflow.dmn.engine.DMNEngine import DMNEngine
from SpiffWorkflow.dmn.parser.BpmnDmnParser import BpmnDmnParser
from SpiffWorkflow.exceptions import SpiffWorkflowException, WorkflowException
from SpiffWorkflow.spiff.parser.process import VALIDATOR, SpiffBpmnParser
from SpiffWorkflow.spiff.serializer.config import SPIFF_CONFIG
from SpiffWorkflow.task import Task
from SpiffWorkflow.util.task import TaskState

from engine import sandbox
from engine.errors import ExpressionError, Problem

SERIALIZER = BpmnWorkflowSerializer(BpmnWorkflowSerializer.configure(SPIFF_CONFIG))
_SCRIPT_ENGINE = sandbox.make_script_engine()
_WORKFLOW_CONVERTER = BpmnWorkflowConverter(BpmnWorkflow, SERIALIZER.registry)

__all__ = [
    "DecisionResult",
    "ParsedSpecs",
    "RuleMatch",
    "SpiffError",
    "Workflow",
    "evaluate_decision",
    "parse_sources",
    "problem_from_spiff",
    "xml_parser",
]


class SpiffError(Exception):
    """SpiffWorkflow failed while running a task; carries a message fit for people."""


@dataclass
class ParsedSpecs:
    """A process spec with the subprocess/decision specs it needs, plus their serialized form."""

    process_id: str
    spec: Any
    subprocess_specs: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": SERIALIZER.to_dict(self.spec),
            "subprocess_specs": {k: SERIALIZER.to_dict(v) for k, v in self.subprocess_specs.items()},
        }

    @classmethod
    def from_dict(cls, process_id: str, data: Mapping[str, Any]) -> ParsedSpecs:
        restored = json.loads(json.dumps(data))  # restore() consumes its input; never hand it a cached dict
        return cls(
            process_id=process_id,
            spec=SERIALIZER.from_dict(restored["spec"]),
            subprocess_specs={k: SERIALIZER.from_dict(v) for k, v in restored["subprocess_specs"].items()},
        )


def problem_from_spiff(err: Exception, default_file: str) -> Problem:
    """Turn a SpiffWorkflow parse/validation error into a Problem with file, element and line."""
    if isinstance(err, ValidationException):
        line = err.line_number if isinstance(err.line_number, int) else None
        element = err.id or None
        text = str(err.args[0]) if err.args else str(err)
        return Problem(file=err.file_name or default_file, message=_humane(text), element=element, line=line)
    text = str(err.args[0]) if getattr(err, "args", None) else str(err)
    return Problem(file=default_file, message=_humane(text))


def _humane(text: str) -> str:
    text = text.strip().splitlines()[0] if text.strip() else "the file could not be read"
    if "is not marked as executable" in text:
        return text + " (set isExecutable=\"true\" on the process)"
    return text


def xml_parser() -> etree.XMLParser:
    """A parser that never expands entities, never fetches anything and refuses giant nodes."""
    return etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)


def parse_sources(
    bpmn: Mapping[str, bytes], dmn: Mapping[str, bytes], *, process_ids: Iterable[str] | None = None
) -> dict[str, ParsedSpecs]:
    """Parse BPMN (XSD-validated) and DMN documents; return the specs of each executable process.

    Raises ValidationException/SpiffWorkflowException/etree errors: callers turn them into Problems.
    """
    parser = SpiffBpmnParser(validator=VALIDATOR)
    for name, content in dmn.items():
        parser.add_dmn_xml(etree.fromstring(content, xml_parser()), filename=name)
    for name, content in bpmn.items():
        parser.add_bpmn_xml(etree.fromstring(content, xml_parser()), filename=name)
    wanted = list(process_ids) if process_ids is not None else parser.get_process_ids()
    out: dict[str, ParsedSpecs] = {}
    for pid in wanted:
        spec = parser.get_spec(pid)
        out[pid] = ParsedSpecs(process_id=pid, spec=spec, subprocess_specs=parser.get_subprocess_specs(pid))
    return out


def _run(action: Any, *args: Any) -> Any:
    """Call into Spiff, turning its exceptions (and sandbox violations) into SpiffError messages."""
    try:
        return action(*args)
    except ExpressionError as err:
        raise SpiffError(err.message) from err
    except (SpiffWorkflowException, WorkflowException) as err:
        inner = getattr(err, "exception", None)
        detail = inner.message if isinstance(inner, ExpressionError) else str(err)
        task = getattr(err, "task", None)
        where = f" in '{task.task_spec.bpmn_name or task.task_spec.name}'" if task is not None else ""
        raise SpiffError(f"the workflow failed{where}: {detail}") from err


class Workflow:
    """A running BpmnWorkflow with the few operations the engine needs."""

    def __init__(self, wf: BpmnWorkflow) -> None:
        self.wf = wf
        # the ready user tasks, found once per state: a change asks for them ~5 times, and each walk of the task
        # tree costs ~30 us; every Spiff call that can change a task's state goes through `_mutate`, which forgets them
        self._ready: list[Task] | None = None

    @classmethod
    def start(cls, specs: ParsedSpecs, data: Mapping[str, Any]) -> Workflow:
        """Create an instance, seed its start data and step the engine to the first human task."""
        wf = BpmnWorkflow(specs.spec, specs.subprocess_specs, script_engine=_SCRIPT_ENGINE)
        start = wf.task_tree
        for task in wf.get_tasks(state=TaskState.READY):
            start = task
        start.data.update(json.loads(json.dumps(dict(data))))
        out = cls(wf)
        out.step()
        return out

    @classmethod
    def restore(cls, specs: ParsedSpecs, state: Mapping[str, Any]) -> Workflow:
        """Rebuild a workflow from its spec-less state and the cached specs of its version."""
        dct = json.loads(json.dumps(state))  # restore() consumes its input
        _expand(dct)
        SERIALIZER.migrate(dct)
        _parents_first(dct)
        for sub in dct.get("subprocesses", {}).values():
            _parents_first(sub)
        wf = BpmnWorkflow(specs.spec, specs.subprocess_specs, deserializing=True)
        conv = _WORKFLOW_CONVERTER
        wf.tasks = conv.mapping_from_dict(dct["tasks"], UUID, workflow=wf)
        wf.task_tree = wf.tasks.get(UUID(dct["root"]))
        conv.set_default_attributes(wf, dct)
        conv.subprocesses_from_dict(dct["subprocesses"], wf)
        wf.bpmn_events = SERIALIZER.registry.restore(dct.pop("bpmn_events", []))
        wf.script_engine = _SCRIPT_ENGINE
        return cls(wf)

    def state(self) -> dict[str, Any]:
        """The serialized workflow without its specs (they live with the definition version).

        What `SERIALIZER.to_dict` (BpmnWorkflowConverter.to_dict) writes, less the two spec entries, which it
        would convert on every write only for us to drop them (~40% of serializing an instance).
        """
        wf, conv = self.wf, _WORKFLOW_CONVERTER
        dct = WorkflowConverter.to_dict(conv, wf)
        dct["subprocesses"] = conv.mapping_to_dict(wf.subprocesses)
        dct["bpmn_events"] = conv.registry.convert(wf.bpmn_events)
        dct["typename"] = SERIALIZER.registry.typenames[BpmnWorkflow]
        dct[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
        _compact(dct)
        return dct

    def step(self) -> None:
        self._mutate(self.wf.do_engine_steps)

    def refresh_timers(self) -> None:
        """Fire due Spiff timers (only when we call this) and run what follows."""
        self._mutate(self.wf.refresh_timers)
        self.step()

    def _mutate(self, action: Any, *args: Any) -> Any:
        """Run a Spiff call that may change task states; ready tasks are found afresh after it, even if it failed."""
        try:
            return _run(action, *args)
        finally:
            self._ready = None

    @property
    def completed(self) -> bool:
        return bool(self.wf.completed)

    def ready_human_tasks(self) -> list[Task]:
        if self._ready is None:
            self._ready = list(self.wf.get_tasks(state=TaskState.READY, manual=True))
        return list(self._ready)

    def task(self, task_id: UUID | str) -> Task | None:
        return self.wf.get_task_from_id(UUID(str(task_id)))

    def data(self) -> dict[str, Any]:
        """The business data as the last completed task (or the ready one) sees it."""
        ready = self.ready_human_tasks()
        if ready:
            return deepcopy(dict(shared_data_task(ready[0]).data))  # Spiff mutates nested values in place
        if self.wf.completed and not self.wf.success:  # cancelled: cancel() kept the data as it stood
            return dict(self.wf.data)
        last = self.wf.last_task
        if last is not None:
            return dict(last.data)
        return dict(self.wf.data)

    def complete(self, task: Task, data: Mapping[str, Any]) -> None:
        """Merge submitted data into a ready human task, run it and step the engine."""
        task.data.update(json.loads(json.dumps(dict(data))))
        self._mutate(task.run)
        self.step()

    def reset_to(self, task_spec_name: str, data: Mapping[str, Any]) -> bool:
        """Go back to the most recent completed run of a task, keeping the data gathered since."""
        runs = [t for t in self.wf.get_tasks(state=TaskState.COMPLETED) if t.task_spec.name == task_spec_name]
        if not runs:
            return False
        target = max(runs, key=lambda t: t.last_state_change)
        merged = {**self.data(), **json.loads(json.dumps(dict(data)))}
        self._mutate(self.wf.reset_from_task_id, target.id, merged)
        self.step()
        return True

    def end_event(self) -> str | None:
        """The end event the workflow finished on, if it is complete."""
        if not self.wf.completed:
            return None
        ends = [
            t for t in self.wf.get_tasks(state=TaskState.COMPLETED)
            if type(t.task_spec).__name__ == "EndEvent"
        ]
        return max(ends, key=lambda t: t.last_state_change).task_spec.name if ends else None



# Per task, what Spiff writes when there is nothing to say; stored states leave these out (a task shrinks from
# ~380 to ~250 bytes) and `restore` puts them back, so old full states and new compact ones both load.
_TASK_DEFAULTS: dict[str, Callable[[], Any]] = {"triggered": lambda: False, "internal_data": dict, "data": dict,
                                                "delta": dict, "typename": lambda: "Task"}


def _task_maps(dct: dict[str, Any]) -> list[dict[str, Any]]:
    return [dct.get("tasks") or {}] + [sub.get("tasks") or {} for sub in (dct.get("subprocesses") or {}).values()]


def _compact(dct: dict[str, Any]) -> None:
    """Drop each task's id (it is the key) and every field that holds its default."""
    for tasks in _task_maps(dct):
        for key, task in tasks.items():
            if task.get("id") == key:
                del task["id"]
            for name, default in _TASK_DEFAULTS.items():
                if name in task and task[name] == default():
                    del task[name]


def _expand(dct: dict[str, Any]) -> None:
    """Undo `_compact` (a no-op on a full state)."""
    for tasks in _task_maps(dct):
        for key, task in tasks.items():
            task.setdefault("id", key)
            for name, default in _TASK_DEFAULTS.items():
                if name not in task:
                    task[name] = default()


def _parents_first(dct: dict[str, Any]) -> None:
    """Order tasks root-first: Spiff 3.2 stores task data as deltas against the parent and applies
    them in dict order, so any key reordering (sort_keys, PostgreSQL JSONB) would silently lose data."""
    tasks: dict[str, Any] = dct.get("tasks", {})
    root = dct.get("root")
    if root not in tasks:
        return
    ordered: dict[str, Any] = {}
    queue = [root]
    while queue:
        tid = queue.pop(0)
        if tid in ordered or tid not in tasks:
            continue
        ordered[tid] = tasks[tid]
        queue.extend(tasks[tid].get("children", ()))
    for tid, task in tasks.items():  # anything unreachable keeps its place after the tree
        ordered.setdefault(tid, task)
    dct["tasks"] = ordered


# ---------------------------------------------------------------- decision tables (assignment rules)


@dataclass(frozen=True)
class RuleMatch:
    """One decision-table row whose every input cell held: its number (1-based), id, cells and outputs."""

    row: int
    rule_id: str
    inputs: dict[str, str]
    outputs: dict[str, Any]
    description: str = ""


@dataclass(frozen=True)
class DecisionResult:
    """Every matching row in table order, the rows that could not be evaluated, and the input values."""

    decision_id: str
    hit_policy: str
    values: dict[str, Any]
    matches: list[RuleMatch]
    skipped: list[tuple[int, str]]


class _DecisionTask:
    """The few task attributes Spiff's DMN engine and its exceptions read, without a running workflow."""

    def __init__(self, decision_id: str, file: str, data: dict[str, Any]) -> None:
        self.data = data
        self.task_spec = SimpleNamespace(name=decision_id, bpmn_name=decision_id)
        self.workflow = SimpleNamespace(script_engine=_SCRIPT_ENGINE, spec=SimpleNamespace(file=file))
        self.workflow.top_workflow = self.workflow


def _decision_file(sources: Mapping[str, str | bytes], decision_id: str) -> tuple[str, bytes]:
    """The DMN document that defines `decision_id` (documents that do not parse are passed over)."""
    for name, content in sorted(sources.items()):
        raw = content.encode() if isinstance(content, str) else content
        if decision_id in _decisions_in(raw):
            return name, raw
    raise SpiffError(f"no DMN file of this definition version defines decision '{decision_id}'")


@functools.lru_cache(maxsize=256)
def _decisions_in(raw: bytes) -> frozenset[str]:
    """Decision ids a DMN document defines (parsed once per distinct document, not per evaluation)."""
    try:
        root = etree.fromstring(raw, xml_parser())
    except etree.XMLSyntaxError:
        return frozenset()
    return frozenset(node.get("id") or "" for node in root.iter("{*}decision"))


@functools.lru_cache(maxsize=64)
def _decision_table(name: str, raw: bytes, decision_id: str) -> Any:
    """The parsed (read-only) decision table, once per distinct document."""
    parser = BpmnDmnParser()
    try:
        parser.add_dmn_xml(etree.fromstring(raw, xml_parser()), filename=name)
        dmn = parser.dmn_parsers[decision_id]
        dmn.parse()
    except (ValidationException, KeyError) as err:
        raise SpiffError(f"decision '{decision_id}' in {name} cannot be read: {err}") from err
    return dmn.decision.decisionTables[0]


@functools.lru_cache(maxsize=64)
def _names_used(table: Any) -> frozenset[str]:
    """Variables the input expressions and cells read: unset ones are given as None, as in criteria."""
    used: set[str] = set()
    texts = [i.expression or "" for i in table.inputs]
    texts += [lhs for r in table.rules for e in r.inputEntries for lhs in e.lhs if lhs]
    texts += [e.text for r in table.rules for e in r.outputEntries if e.text]
    for text in texts:
        for source in (text.replace("?", " v "), f"v {text}"):
            try:
                tree = ast.parse(source.strip(), mode="eval")
            except SyntaxError:
                continue
            used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            break
    return frozenset(used - {"v"})


def _row_holds(engine: DMNEngine, rule: Any, task: _DecisionTask) -> bool:
    """Spiff's own cell test; the trailing space stops it gluing `region` + `in (...)` into `regionin (...)`."""
    return all(
        engine.evaluate(f"{entry.input.expression or entry.input.label} ", lhs, task)
        for entry in rule.inputEntries for lhs in entry.lhs if lhs is not None and lhs.strip()
    )


def _input_values(table: Any, task: _DecisionTask) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in table.inputs:
        expression = column.expression or column.label
        try:
            values[column.label or expression] = _SCRIPT_ENGINE.evaluate(task, expression)
        except Exception as err:
            values[column.label or expression] = f"<cannot be evaluated: {_reason(err)}>"
    return values


def _reason(err: Exception) -> str:
    inner = getattr(err, "exception", None)
    if isinstance(inner, ExpressionError):
        return inner.message
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def evaluate_decision(sources: Mapping[str, str | bytes], decision_id: str,
                      data: Mapping[str, Any]) -> DecisionResult:
    """Run one decision table in the sandbox and return every matching row, first to last.

    Unlike Spiff's own UNIQUE (which stops at the first hit), every row is tried, so the caller can
    refuse a UNIQUE table that matched twice; a row whose cell fails (e.g. `> 100` on an unset
    amount) does not match and is reported in `skipped`.
    """
    name, raw = _decision_file(sources, decision_id)
    table = _decision_table(name, raw, decision_id)
    names = json.loads(json.dumps(dict(data), default=str))
    for missing in _names_used(table) - names.keys():
        names[missing] = None
    task = _DecisionTask(decision_id, name, names)
    engine = DMNEngine(table)
    matches: list[RuleMatch] = []
    skipped: list[tuple[int, str]] = []
    for rule in table.rules:
        try:
            if not _row_holds(engine, rule, task):
                continue
        except Exception as err:
            skipped.append((rule.row_number, _reason(err)))
            continue
        try:
            outputs = json.loads(json.dumps(dict(rule.output_as_dict(task)), default=str))
        except Exception as err:
            raise SpiffError(f"decision '{decision_id}' row {rule.row_number}: an output failed: "
                             f"{_reason(err)}") from err
        cells = {(e.input.label or e.input.expression or "?"): e.lhs[0] for e in rule.inputEntries
                 if e.lhs and e.lhs[0] is not None and e.lhs[0].strip()}
        matches.append(RuleMatch(rule.row_number, rule.id, cells, outputs, (rule.description or "").strip()))
    return DecisionResult(decision_id, table.hit_policy, _input_values(table, task), matches, skipped)


# ---------------------------------------------------------------- multi-instance tasks and early close


def shared_data_task(task: Task) -> Task:
    """The task holding an instance's shared data: a multi-instance child only has a private copy
    (plus its item), and its answer reaches the shared data through the parent's output collection."""
    parent = task.parent
    if parent is not None and isinstance(parent.task_spec, MultiInstanceTask):
        return parent
    return task


def instance_item(task: Task) -> Any:
    """The item a multi-instance child works on (e.g. its department), or None for an ordinary task."""
    parent = task.parent
    spec = parent.task_spec if parent is not None else None
    if not isinstance(spec, MultiInstanceTask):
        return None
    if spec.input_item is not None and spec.input_item.exists(task):
        return spec.input_item.get(task)
    return task.internal_data.get("key_or_index", task.internal_data.get("item"))


def task_label(task: Task) -> str:
    """What people call a ready task: its name, plus the item of a multi-instance child."""
    name = str(task.task_spec.bpmn_name or task.task_spec.name)
    item = instance_item(task)
    return f"{name}: {item}" if isinstance(item, str | int) and not isinstance(item, bool) else name


def cancel(workflow: Workflow, *, record_open_as: str) -> list[str]:
    """Close early: cancel every open task and keep the shared data as it stood, plus, under
    `record_open_as`, who had not answered (a multi-instance child's item, else the task's name)."""
    open_labels = [_open_label(t) for t in workflow.ready_human_tasks()]
    data = {**workflow.data(), record_open_as: open_labels}
    workflow._mutate(workflow.wf.cancel)
    workflow.wf.data = data
    return open_labels


def _open_label(task: Task) -> str:
    item = instance_item(task)
    return str(item) if isinstance(item, str | int) and not isinstance(item, bool) else task_label(task)


# ---------------------------------------------------------------- timers on the engine's clock
#
# SpiffWorkflow 3.2 compares timers with the real clock (datetime.now) whenever the engine steps. The
# engine must decide time itself (an injected clock; one ticker fires due work exactly once), so every
# waiting timer is *held*: its due time on the engine's clock goes into the task's internal data
# (DUE_AT) and Spiff's own `event_value` is set to a moment its clock never reaches. fire_timers
# releases exactly the timers due at a given `now` (event_value in the past) and lets Spiff fire them.
# Duration and date timers are held; cycle timers are not supported by the engine's ticker.

HELD_UNTIL = "9999-12-31T23:59:59+00:00"
RELEASED = "1970-01-01T00:00:00+00:00"
DUE_AT = "funnel_due_at"


@dataclass(frozen=True)
class PendingTimer:
    """A waiting timer: its task, spec, name, the activity it is attached to, and when it is due."""

    task_id: str
    spec: str
    name: str
    attached_to: str | None  # a boundary timer's activity (e.g. the department task it chases)
    due_at: datetime | None  # None: armed by Spiff on the real clock, not yet held (see arm_timers)


def pending_timers(state: Mapping[str, Any], specs: ParsedSpecs) -> list[PendingTimer]:
    """The waiting timers of a serialized instance, read without restoring it (cheap on every write)."""
    timers = _timer_specs(specs)
    waiting = int(TaskState.WAITING)
    out: list[PendingTimer] = []
    tasks = [state.get("tasks", {})] + [sub.get("tasks", {}) for sub in state.get("subprocesses", {}).values()]
    for mapping in tasks:
        for task_id, task in mapping.items():
            spec = task.get("task_spec")
            if task.get("state") != waiting or spec not in timers:
                continue
            due = (task.get("internal_data") or {}).get(DUE_AT)
            name, attached = timers[spec]
            out.append(PendingTimer(str(task_id), spec, name, attached, datetime.fromisoformat(due) if due else None))
    return out


def arm_timers(workflow: Workflow, now: datetime) -> bool:
    """Hold every timer Spiff armed on its own clock, due on the engine's clock from `now`; True if any."""
    changed = False
    for task in _timer_tasks(workflow):
        if task.internal_data.get(DUE_AT) is not None:
            continue
        due = _run(_due_time, task, now)
        task._set_internal_data(**{DUE_AT: due.isoformat(), "event_value": HELD_UNTIL})
        changed = True
    return changed


def fire_timers(workflow: Workflow, now: datetime) -> list[PendingTimer]:
    """Fire the held timers due at `now` (and only those), run what follows, hold any new ones."""
    timers = _timer_specs_of(workflow)
    fired: list[PendingTimer] = []
    for task in _timer_tasks(workflow):
        due = task.internal_data.get(DUE_AT)
        if due is not None and datetime.fromisoformat(due) <= now:
            name, attached = timers.get(task.task_spec.name, (task.task_spec.name, None))
            fired.append(PendingTimer(str(task.id), task.task_spec.name, name, attached, datetime.fromisoformat(due)))
            task._set_internal_data(event_value=RELEASED)
    if fired:
        workflow.refresh_timers()
    arm_timers(workflow, now)
    return fired


def _timer_tasks(workflow: Workflow) -> list[Task]:
    """Waiting duration and date timers, in the process and its sub-processes."""
    return [t for t in list(workflow.wf.event_manager.tasks.values())
            if t.state == TaskState.WAITING
            and isinstance(getattr(t.task_spec, "event_definition", None),
                           DurationTimerEventDefinition | TimeDateEventDefinition)]


def _due_time(task: Task, now: datetime) -> datetime:
    """When a timer is due on the engine's clock: `now` plus its duration, or its date."""
    definition = task.task_spec.event_definition
    if isinstance(definition, DurationTimerEventDefinition):
        expression = task.workflow.script_engine.evaluate(task, definition.expression)
        parsed = TimerEventDefinition.parse_iso_duration(expression)
        return now + TimerEventDefinition.get_timedelta_from_start(parsed, now)
    value = task.internal_data.get("event_value")
    if value is None or value == HELD_UNTIL:
        value = task.workflow.script_engine.evaluate(task, definition.expression)
    moment = TimerEventDefinition.parse_time_or_duration(value)
    if not isinstance(moment, datetime):
        raise SpiffError(f"timer '{task.task_spec.bpmn_name or task.task_spec.name}' gives {value!r}, not a date")
    return moment


def _timer_specs_of(workflow: Workflow) -> dict[str, tuple[str, str | None]]:
    specs = [workflow.wf.spec, *workflow.wf.subprocess_specs.values()]
    return _timer_names(s.task_specs for s in specs)


def _timer_specs(specs: ParsedSpecs) -> dict[str, tuple[str, str | None]]:
    """Timer spec name -> (its name for people, the activity a boundary timer is attached to)."""
    return _timer_names(s.task_specs for s in [specs.spec, *specs.subprocess_specs.values()])


def _timer_names(groups: Iterable[Mapping[str, Any]]) -> dict[str, tuple[str, str | None]]:
    out: dict[str, tuple[str, str | None]] = {}
    for task_specs in groups:
        attached: dict[str, str] = {}
        for spec in task_specs.values():
            if type(spec).__name__ == "BoundaryEventSplit":
                timers = [o.name for o in spec.outputs if type(o).__name__ == "BoundaryEvent"]
                main = next((o.name for o in spec.outputs if type(o).__name__ != "BoundaryEvent"), None)
                attached.update(dict.fromkeys(timers, main))
        for name, spec in task_specs.items():
            if isinstance(getattr(spec, "event_definition", None), TimerEventDefinition):
                out[name] = (str(spec.bpmn_name or name), attached.get(name))
    return out

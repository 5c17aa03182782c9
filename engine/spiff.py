"""The one adapter around SpiffWorkflow 3.2.0: parse, start, ready tasks, complete, reset, timers, serialize.

Nothing else in the project imports SpiffWorkflow except the sandbox (which must subclass its
script environment). Contract tests in tests/engine/test_spiff.py pin the behaviour we rely on.

Serialized state deliberately leaves the process spec out (`spec`, `subprocess_specs`): a spec is
stored once per definition version, not repeated in every instance, and restored from a cache.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from lxml import etree
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.serializer.default.workflow import BpmnWorkflowConverter
from SpiffWorkflow.bpmn.serializer.workflow import BpmnWorkflowSerializer
from SpiffWorkflow.bpmn.workflow import BpmnWorkflow
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
    "ParsedSpecs",
    "SpiffError",
    "Workflow",
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
        """The serialized workflow without its specs (they live with the definition version)."""
        dct = SERIALIZER.to_dict(self.wf)
        dct.pop("spec", None)
        dct.pop("subprocess_specs", None)
        dct[SERIALIZER.VERSION_KEY] = SERIALIZER.VERSION
        return dct

    def step(self) -> None:
        _run(self.wf.do_engine_steps)

    def refresh_timers(self) -> None:
        """Fire due Spiff timers (only when we call this) and run what follows."""
        _run(self.wf.refresh_timers)
        self.step()

    @property
    def completed(self) -> bool:
        return bool(self.wf.completed)

    def ready_human_tasks(self) -> list[Task]:
        return list(self.wf.get_tasks(state=TaskState.READY, manual=True))

    def task(self, task_id: UUID | str) -> Task | None:
        return self.wf.get_task_from_id(UUID(str(task_id)))

    def data(self) -> dict[str, Any]:
        """The business data as the last completed task (or the ready one) sees it."""
        ready = self.ready_human_tasks()
        if ready:
            return dict(ready[0].data)
        last = self.wf.last_task
        if last is not None:
            return dict(last.data)
        return dict(self.wf.data)

    def complete(self, task: Task, data: Mapping[str, Any]) -> None:
        """Merge submitted data into a ready human task, run it and step the engine."""
        task.data.update(json.loads(json.dumps(dict(data))))
        _run(task.run)
        self.step()

    def reset_to(self, task_spec_name: str, data: Mapping[str, Any]) -> bool:
        """Go back to the most recent completed run of a task, keeping the data gathered since."""
        runs = [t for t in self.wf.get_tasks(state=TaskState.COMPLETED) if t.task_spec.name == task_spec_name]
        if not runs:
            return False
        target = max(runs, key=lambda t: t.last_state_change)
        merged = {**self.data(), **json.loads(json.dumps(dict(data)))}
        _run(self.wf.reset_from_task_id, target.id, merged)
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

"""Stage metadata and stage-advance criteria: declared in workflow files, enforced by us before Spiff runs.

The `funnel:` extension elements (see workflows/README.md) are parsed here from the lxml tree, so
the same code serves loading (definitions), linting (lint) and enforcement (instances).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lxml import etree

from engine import sandbox
from engine.errors import ExpressionError, Problem, UnmetCriterion

FUNNEL_NS = "urn:funnel:1.0"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
NS = {"bpmn": BPMN_NS, "funnel": FUNNEL_NS}
POLICY_VALUES = ("never", "with-reason")

Policy = Literal["never", "with-reason"]


@dataclass(frozen=True)
class Criterion:
    """A named exit condition; `kind` is 'test', or 'any'/'all' for a group of children."""

    name: str
    message: str
    kind: str = "test"
    test: str | None = None
    when: str | None = None
    children: tuple[Criterion, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "message": self.message, "kind": self.kind}
        if self.test is not None:
            out["test"] = self.test
        if self.when is not None:
            out["when"] = self.when
        if self.children:
            out["children"] = [c.to_dict() for c in self.children]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Criterion:
        return cls(
            name=data["name"],
            message=data["message"],
            kind=data.get("kind", "test"),
            test=data.get("test"),
            when=data.get("when"),
            children=tuple(cls.from_dict(c) for c in data.get("children", ())),
        )


@dataclass(frozen=True)
class Stage:
    """One stage of a workflow: the user task that embodies it, its order, probability and criteria."""

    task: str
    name: str
    order: int
    probability: float | None
    criteria: tuple[Criterion, ...] = ()
    lane: str | None = None
    role: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "name": self.name,
            "order": self.order,
            "probability": self.probability,
            "criteria": [c.to_dict() for c in self.criteria],
            "lane": self.lane,
            "role": self.role,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Stage:
        return cls(
            task=data["task"],
            name=data["name"],
            order=int(data["order"]),
            probability=data.get("probability"),
            criteria=tuple(Criterion.from_dict(c) for c in data.get("criteria", ())),
            lane=data.get("lane"),
            role=data.get("role"),
        )


@dataclass(frozen=True)
class Outcome:
    """What reaching an end event means: a status (won, lost, closed...) and a final probability."""

    end_event: str
    status: str
    probability: float | None = None


@dataclass(frozen=True)
class WorkflowMeta:
    """Everything the engine knows about a workflow beyond what SpiffWorkflow runs."""

    process_id: str
    title: str
    amount: str | None = None
    backward: Policy = "never"
    skip: Policy = "never"
    stages: tuple[Stage, ...] = ()
    outcomes: tuple[Outcome, ...] = ()

    def stage_for_task(self, task_spec_name: str) -> Stage | None:
        return next((s for s in self.stages if s.task == task_spec_name), None)

    def stage_named(self, name: str) -> Stage | None:
        wanted = name.strip().lower()
        return next((s for s in self.stages if s.name.lower() == wanted or s.task == name), None)

    def outcome_for(self, end_event: str) -> Outcome | None:
        return next((o for o in self.outcomes if o.end_event == end_event), None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "process_id": self.process_id,
            "title": self.title,
            "amount": self.amount,
            "policy": {"backward": self.backward, "skip": self.skip},
            "stages": [s.to_dict() for s in self.stages],
            "outcomes": [o.__dict__ for o in self.outcomes],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkflowMeta:
        policy = data.get("policy", {})
        return cls(
            process_id=data["process_id"],
            title=data["title"],
            amount=data.get("amount"),
            backward=policy.get("backward", "never"),
            skip=policy.get("skip", "never"),
            stages=tuple(Stage.from_dict(s) for s in data.get("stages", ())),
            outcomes=tuple(Outcome(**o) for o in data.get("outcomes", ())),
        )


# ---------------------------------------------------------------- parsing


@dataclass
class _Parse:
    """Collects problems while parsing one process element."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def problem(self, node: etree._Element, message: str, element: str | None = None) -> None:
        self.problems.append(
            Problem(
                file=self.file,
                message=message,
                element=element or _element_id(node),
                line=node.sourceline,
            )
        )

    def expression(self, node: etree._Element, attr: str, element: str | None) -> str | None:
        value = node.get(attr)
        if value is None:
            return None
        for reason in sandbox.check(value, mode="eval"):
            self.problem(node, f"{attr}=\"{value}\": {reason}", element)
        return value


def _element_id(node: etree._Element) -> str | None:
    while node is not None:
        if node.get("id"):
            return node.get("id")
        node = node.getparent()
    return None


def _lanes(process: etree._Element) -> dict[str, tuple[str, str | None]]:
    """Map flow node id -> (lane name, role) for every lane of the process."""
    out: dict[str, tuple[str, str | None]] = {}
    for lane in process.iterfind(".//bpmn:lane", NS):
        role_el = lane.find("bpmn:extensionElements/funnel:role", NS)
        role = role_el.get("name") if role_el is not None else None
        for ref in lane.iterfind("bpmn:flowNodeRef", NS):
            if ref.text:
                out[ref.text.strip()] = (lane.get("name") or lane.get("id") or "", role)
    return out


def _criteria(ctx: _Parse, parent: etree._Element, task_id: str) -> tuple[Criterion, ...]:
    found: list[Criterion] = []
    for node in parent:
        if not isinstance(node.tag, str) or etree.QName(node).namespace != FUNNEL_NS:
            continue
        local = etree.QName(node).localname
        name, message = node.get("name"), node.get("message")
        if local not in ("criterion", "anyOf", "allOf"):
            ctx.problem(node, f"unknown stage element funnel:{local}; use criterion, anyOf or allOf", task_id)
            continue
        if not name or not message:
            ctx.problem(node, f"funnel:{local} needs both a name and a message", task_id)
            continue
        when = ctx.expression(node, "when", task_id)
        if local == "criterion":
            test = ctx.expression(node, "test", task_id)
            if test is None:
                ctx.problem(node, f"criterion '{name}' has no test expression", task_id)
                continue
            found.append(Criterion(name=name, message=message, test=test, when=when))
        else:
            children = _criteria(ctx, node, task_id)
            if not children:
                ctx.problem(node, f"funnel:{local} '{name}' contains no criteria", task_id)
                continue
            kind = "any" if local == "anyOf" else "all"
            found.append(Criterion(name=name, message=message, kind=kind, when=when, children=children))
    return tuple(found)


def _stage(ctx: _Parse, task: etree._Element, lanes: dict[str, tuple[str, str | None]]) -> Stage | None:
    task_id = task.get("id") or "?"
    node = task.find("bpmn:extensionElements/funnel:stage", NS)
    if node is None:
        label = task.get("name") or task_id
        ctx.problem(task, f"user task '{label}' has no stage metadata: add a funnel:stage element "
                          "with name, order and probability (see workflows/README.md)")
        return None
    name, order_text = node.get("name"), node.get("order")
    if not name:
        ctx.problem(node, "funnel:stage needs a name", task_id)
    order: int | None = None
    try:
        order = int(order_text or "")
        if order < 1:
            raise ValueError
    except ValueError:
        ctx.problem(node, f"funnel:stage order must be a whole number from 1, not {order_text!r}", task_id)
    probability = _probability(ctx, node, task_id)
    lane, role = lanes.get(task_id, (None, None))
    if not name or order is None:
        return None
    return Stage(task=task_id, name=name, order=order, probability=probability,
                 criteria=_criteria(ctx, node, task_id), lane=lane, role=role)


def _probability(ctx: _Parse, node: etree._Element, element: str) -> float | None:
    text = node.get("probability")
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        ctx.problem(node, f"probability must be a number from 0 to 1, not {text!r}", element)
        return None
    return value


def _policy(ctx: _Parse, node: etree._Element | None, attr: str) -> Policy:
    value = node.get(attr, "never") if node is not None else "never"
    if value not in POLICY_VALUES:
        assert node is not None
        ctx.problem(node, f"funnel:policy {attr}={value!r} must be one of {', '.join(POLICY_VALUES)}")
        return "never"
    return value  # type: ignore[return-value]


def parse_workflow_meta(process: etree._Element, file: str) -> tuple[WorkflowMeta, list[Problem]]:
    """Read the funnel metadata of one executable bpmn:process; return it with every problem found."""
    ctx = _Parse(file=file)
    pid = process.get("id") or "?"
    wf = process.find("bpmn:extensionElements/funnel:workflow", NS)
    policy = wf.find("funnel:policy", NS) if wf is not None else None
    amount = ctx.expression(wf, "amount", pid) if wf is not None else None
    title = (wf.get("title") if wf is not None else None) or process.get("name") or pid
    lanes = _lanes(process)
    stages = [s for t in process.iterfind(".//bpmn:userTask", NS) if (s := _stage(ctx, t, lanes))]
    _check_orders(ctx, process, stages)
    outcomes = []
    for end in process.iterfind(".//bpmn:endEvent", NS):
        node = end.find("bpmn:extensionElements/funnel:outcome", NS)
        if node is None:
            continue
        status = node.get("status")
        if not status:
            ctx.problem(node, "funnel:outcome needs a status (e.g. won, lost, closed)", end.get("id"))
            continue
        outcomes.append(Outcome(end_event=end.get("id") or "?", status=status,
                                probability=_probability(ctx, node, end.get("id") or "?")))
    meta = WorkflowMeta(
        process_id=pid,
        title=title,
        amount=amount,
        backward=_policy(ctx, policy, "backward"),
        skip=_policy(ctx, policy, "skip"),
        stages=tuple(sorted(stages, key=lambda s: s.order)),
        outcomes=tuple(outcomes),
    )
    return meta, ctx.problems


def _check_orders(ctx: _Parse, process: etree._Element, stages: Iterable[Stage]) -> None:
    seen: dict[str, int] = {}
    for stage in stages:
        if stage.name in seen and seen[stage.name] != stage.order:
            ctx.problem(process, f"stage '{stage.name}' is declared with two different orders")
        seen[stage.name] = stage.order


# ---------------------------------------------------------------- enforcement


def _holds(expression: str, names: Mapping[str, Any]) -> tuple[bool, str | None]:
    try:
        return bool(sandbox.evaluate(expression, names, missing_as_none=True)), None
    except ExpressionError as err:
        return False, err.message


def unmet_criteria(criteria: Iterable[Criterion], names: Mapping[str, Any]) -> list[UnmetCriterion]:
    """Every criterion (applicable per its `when`) that `names` does not satisfy, in declared order."""
    unmet: list[UnmetCriterion] = []
    for criterion in criteria:
        miss = _evaluate(criterion, names)
        if miss is not None:
            unmet.append(miss)
    return unmet


def _evaluate(criterion: Criterion, names: Mapping[str, Any]) -> UnmetCriterion | None:
    if criterion.when is not None:
        applies, _ = _holds(criterion.when, names)
        if not applies:
            return None
    if criterion.kind == "test":
        assert criterion.test is not None
        ok, detail = _holds(criterion.test, names)
        return None if ok else UnmetCriterion(criterion.name, criterion.message, detail)
    children = [_evaluate(c, names) for c in criterion.children]
    failed = [c for c in children if c is not None]
    met = not failed if criterion.kind == "all" else len(failed) < len(children)
    return None if met else UnmetCriterion(criterion.name, criterion.message, alternatives=failed)

"""Stage metadata and stage-advance criteria: declared in workflow files, enforced by us before Spiff runs.

The `funnel:` extension elements (see workflows/README.md) are parsed here from the lxml tree, so
the same code serves loading (definitions), linting (lint) and enforcement (instances).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from lxml import etree

from engine import sandbox
from engine.data import RESERVED
from engine.errors import ExpressionError, Problem, UnmetCriterion
from engine.sla_policy import SlaPolicy, parse_sla

FUNNEL_NS = "urn:funnel:1.0"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
NS = {"bpmn": BPMN_NS, "funnel": FUNNEL_NS}
POLICY_VALUES = ("never", "with-reason")
WAITING_VALUES = ("never", "allowed")
# SpiffWorkflow names the per-iteration spec of a loop or multi-instance activity "<id> [child]".
LOOP_CHILD_SUFFIX = " [child]"
NOT_COPYABLE = RESERVED | sandbox.SAFE_FUNCTIONS.keys()

Policy = Literal["never", "with-reason"]
Waiting = Literal["never", "allowed"]


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
    assignment: str | None = None  # decision id that assigns this stage's task (overrides the process's)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "name": self.name,
            "order": self.order,
            "probability": self.probability,
            "criteria": [c.to_dict() for c in self.criteria],
            "lane": self.lane,
            "role": self.role,
            "assignment": self.assignment,
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
            assignment=data.get("assignment"),
        )


@dataclass(frozen=True)
class Starts:
    """A workflow an outcome starts (a won deal its project), linked as `link`, carrying `copy` fields."""

    workflow: str
    link: str
    copy: tuple[str, ...] = ()


@dataclass(frozen=True)
class Outcome:
    """What reaching an end event means: a status (won, lost, closed...), a final probability, what it starts."""

    end_event: str
    status: str
    probability: float | None = None
    starts: tuple[Starts, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"end_event": self.end_event, "status": self.status, "probability": self.probability,
                "starts": [{"workflow": s.workflow, "link": s.link, "copy": list(s.copy)} for s in self.starts]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Outcome:
        starts = tuple(Starts(s["workflow"], s["link"], tuple(s.get("copy", ()))) for s in data.get("starts", ()))
        return cls(data["end_event"], data["status"], data.get("probability"), starts)


@dataclass(frozen=True)
class WorkflowMeta:
    """Everything the engine knows about a workflow beyond what SpiffWorkflow runs."""

    process_id: str
    title: str
    amount: str | None = None
    backward: Policy = "never"
    skip: Policy = "never"
    waiting: Waiting = "never"  # may staff mark an instance as waiting on the customer?
    close: Policy = "never"  # may the owner close an instance early (cancelling its open tasks)?
    stages: tuple[Stage, ...] = ()
    outcomes: tuple[Outcome, ...] = ()
    assignment: str | None = None  # decision id that assigns every task (funnel:assignment)
    sla: SlaPolicy | None = None  # SLA clocks, targets and escalation ladder (funnel:sla, engine.sla_policy)

    def decision_for(self, task_spec_name: str) -> str | None:
        """The assignment decision for a task: its stage's own, else the process's, else None."""
        stage = self.stage_for_task(task_spec_name)
        return (stage.assignment if stage else None) or self.assignment

    def stage_for_task(self, task_spec_name: str) -> Stage | None:
        name = task_spec_name.removesuffix(LOOP_CHILD_SUFFIX)
        return next((s for s in self.stages if s.task == name), None)

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
            "policy": {"backward": self.backward, "skip": self.skip, "waiting": self.waiting,
                       "close": self.close},
            "stages": [s.to_dict() for s in self.stages],
            "outcomes": [o.to_dict() for o in self.outcomes],
            "assignment": self.assignment,
            "sla": self.sla.to_dict() if self.sla else None,
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
            waiting=policy.get("waiting", "never"),
            close=policy.get("close", "never"),
            stages=tuple(Stage.from_dict(s) for s in data.get("stages", ())),
            outcomes=tuple(Outcome.from_dict(o) for o in data.get("outcomes", ())),
            assignment=data.get("assignment"),
            sla=SlaPolicy.from_dict(data.get("sla")),
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
        if local == "assignment" and parent.tag == f"{{{FUNNEL_NS}}}stage":
            continue  # the stage's assignment decision, read by _assignment
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
    lane, role = _lane_of(task, lanes)
    if not name or order is None:
        return None
    return Stage(task=task_id, name=name, order=order, probability=probability,
                 criteria=_criteria(ctx, node, task_id), lane=lane, role=role,
                 assignment=_assignment(ctx, node, task_id))


def _assignment(ctx: _Parse, parent: etree._Element | None, element: str) -> str | None:
    """The decision named by the funnel:assignment child of funnel:workflow or funnel:stage."""
    nodes = parent.findall("funnel:assignment", NS) if parent is not None else []
    for extra in nodes[1:]:
        ctx.problem(extra, "only one funnel:assignment is allowed here: remove the others", element)
    if not nodes:
        return None
    decision = (nodes[0].get("decision") or "").strip()
    if not re.fullmatch(r"[A-Za-z_][\w.-]*", decision):  # an XML id (NCName), as DMN decision ids are
        ctx.problem(nodes[0], f'funnel:assignment needs decision="<id of a DMN decision>", not {decision!r}',
                    element)
        return None
    return decision


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


def _lane_of(task: etree._Element, lanes: dict[str, tuple[str, str | None]]) -> tuple[str | None, str | None]:
    """A task inside a sub-process belongs to the lane of the sub-process around it."""
    node: etree._Element | None = task
    while node is not None:
        if node.get("id") in lanes:
            return lanes[node.get("id") or ""]
        node = node.getparent()
    return None, None


def _policy(ctx: _Parse, node: etree._Element | None, attr: str,
            values: tuple[str, ...] = POLICY_VALUES) -> Any:
    value = node.get(attr, "never") if node is not None else "never"
    if value not in values:
        assert node is not None
        ctx.problem(node, f"funnel:policy {attr}={value!r} must be one of {', '.join(values)}")
        return "never"
    return value


def _starts(ctx: _Parse, outcome: etree._Element, end_id: str) -> tuple[Starts, ...]:
    """The funnel:starts of an outcome, each checked here so a bad declaration never loads."""
    found: list[Starts] = []
    for node in outcome.iterfind("funnel:starts", NS):
        workflow, link = (node.get("workflow") or "").strip(), (node.get("link") or "").strip()
        copy = tuple(dict.fromkeys((node.get("copy") or "").split()))
        bad = [n for n in copy if not n.isidentifier() or n.startswith("_") or n in NOT_COPYABLE]
        problems = len(ctx.problems)
        if not workflow or any(c.isspace() for c in workflow):
            ctx.problem(node, 'funnel:starts needs workflow="..." naming the process id to start '
                              "(e.g. project_funding)", end_id)
        if not re.fullmatch(r"[a-z][a-z0-9_]{0,39}", link):
            ctx.problem(node, f"funnel:starts link={link!r} must name the relation in lower-case letters, "
                              "digits and _ (at most 40, e.g. project)", end_id)
        elif link in {s.link for s in found}:
            ctx.problem(node, f"funnel:starts link '{link}' is declared twice on this outcome", end_id)
        if bad:
            ctx.problem(node, f"funnel:starts copy lists {', '.join(repr(n) for n in bad)}, which cannot be "
                              "data fields: list field names separated by spaces", end_id)
        if len(ctx.problems) == problems:
            found.append(Starts(workflow, link, copy))
    return tuple(found)


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
                                probability=_probability(ctx, node, end.get("id") or "?"),
                                starts=_starts(ctx, node, end.get("id") or "?")))
    meta = WorkflowMeta(
        process_id=pid,
        title=title,
        amount=amount,
        backward=_policy(ctx, policy, "backward"),
        skip=_policy(ctx, policy, "skip"),
        waiting=_policy(ctx, policy, "waiting", WAITING_VALUES),
        close=_policy(ctx, policy, "close"),
        stages=tuple(sorted(stages, key=lambda s: s.order)),
        outcomes=tuple(outcomes),
        assignment=_assignment(ctx, wf, pid),
        sla=_sla(ctx, process),
    )
    return meta, ctx.problems


def _sla(ctx: _Parse, process: etree._Element) -> SlaPolicy | None:
    """The funnel:sla declaration (engine.sla_policy), its problems added to the others."""
    policy, problems = parse_sla(process, ctx.file)
    ctx.problems.extend(problems)
    return policy


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

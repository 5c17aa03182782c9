"""SLA policies declared in workflow files: which clocks a workflow has, their targets, pauses and escalation ladder.

Parsed from `funnel:sla` inside the process's `funnel:workflow` (see workflows/README.md, "SLA clocks"),
serialized with the definition's metadata (WorkflowMeta.sla), so running instances keep the policy of
the version they started on. Every problem of a declaration is reported at once, by the same parse the
linter runs. Targets come from a DMN decision (business hours); calendars from workflows/calendars.
"""

from __future__ import annotations

import ast
import functools
import json
import re
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from threading import Lock
from typing import Any, Literal

from lxml import etree

from engine.calendar import BusinessCalendar, load_calendars
from engine.errors import Problem, WorkflowFailed
from engine.spiff import SpiffError, evaluate_decision, xml_parser

FUNNEL_NS = "urn:funnel:1.0"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
NS = {"bpmn": BPMN_NS, "funnel": FUNNEL_NS}
PAUSE_STATES = ("waiting",)  # waiting: the instance waits on the customer (Funnel.set_waiting)
LEVEL_AT = ("warning", "breach")
SHIPPED_CALENDARS = Path(__file__).resolve().parent.parent / "workflows" / "calendars"
_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")
_ID = re.compile(r"[A-Za-z_][\w.-]*")
_DURATION = re.compile(r"PT(?=\d)(?:(\d+)H)?(?:(\d+)M)?")
_NOTIFY = re.compile(r"assignee|manager|role:[a-z_]{1,40}|user:[A-Za-z0-9._@-]{1,100}")

Per = Literal["instance", "task"]


@dataclass(frozen=True)
class ClockSpec:
    """One clock: per instance (started/stopped by events) or one per open task of the listed tasks."""

    name: str
    title: str
    per: Per = "instance"
    tasks: tuple[str, ...] = ()  # per="task": task ids (empty: every stage's task)
    start: tuple[str, ...] = ("created",)  # per="instance": created | opened:<task id>
    stop: tuple[str, ...] = ()  # per="instance": completed:<task id>; the instance's end always stops

    def counts_task(self, task_spec: str) -> bool:
        """Whether a per-task clock runs for this task (multi-instance children count as their activity)."""
        return self.per == "task" and (not self.tasks or _plain(task_spec) in self.tasks)


@dataclass(frozen=True)
class Level:
    """One rung of the escalation ladder: reached `after` business time past the warning or the breach."""

    name: str
    at: Literal["warning", "breach"]
    after: timedelta = timedelta(0)
    notify: tuple[str, ...] = ("assignee",)
    severity: int = 0  # 0 warning, 1 breach, 2+ further escalation (what e-mails show)

    @property
    def audit_kind(self) -> str:
        return ("sla_warning", "sla_breach")[self.severity] if self.severity < 2 else "sla_escalation"

    def threshold(self, target: timedelta, warning_ratio: float) -> timedelta:
        """The consumed business time at which this level is reached."""
        base = warning_threshold(target, warning_ratio) if self.at == "warning" else target
        return base + self.after


@dataclass(frozen=True)
class SlaPolicy:
    """Everything a workflow declares about its SLA clocks."""

    calendar: str
    targets: str  # DMN decision id giving `hours`
    warning: float = 0.75  # share of the target consumed when the warning is due
    pause: tuple[str, ...] = ("waiting",)
    clocks: tuple[ClockSpec, ...] = ()
    levels: tuple[Level, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "calendar": self.calendar, "targets": self.targets, "warning": self.warning, "pause": list(self.pause),
            "clocks": [{"name": c.name, "title": c.title, "per": c.per, "tasks": list(c.tasks),
                        "start": list(c.start), "stop": list(c.stop)} for c in self.clocks],
            "levels": [{"name": lv.name, "at": lv.at, "after_seconds": lv.after.total_seconds(),
                        "notify": list(lv.notify), "severity": lv.severity} for lv in self.levels],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> SlaPolicy | None:
        if not data:
            return None
        clocks = tuple(ClockSpec(c["name"], c["title"], c.get("per", "instance"), tuple(c.get("tasks", ())),
                                 tuple(c.get("start", ())), tuple(c.get("stop", ()))) for c in data["clocks"])
        levels = tuple(Level(lv["name"], lv["at"], timedelta(seconds=lv.get("after_seconds", 0)),
                             tuple(lv.get("notify", ())), int(lv.get("severity", 0))) for lv in data["levels"])
        return cls(data["calendar"], data["targets"], float(data.get("warning", 0.75)), tuple(data.get("pause", ())),
                   clocks, levels)

    def clock(self, name: str) -> ClockSpec | None:
        return next((c for c in self.clocks if c.name == name), None)


def warning_threshold(target: timedelta, ratio: float) -> timedelta:
    """The consumed time at which the warning is due, in whole microseconds (so figures agree everywhere)."""
    return timedelta(microseconds=round(target / timedelta(microseconds=1) * ratio))


def _plain(task_spec: str) -> str:
    return task_spec.removesuffix(" [child]")


# ---------------------------------------------------------------- parsing


@dataclass
class _Parse:
    file: str
    element: str
    problems: list[Problem] = field(default_factory=list)

    def problem(self, node: etree._Element, message: str) -> None:
        self.problems.append(Problem(file=self.file, message=message, element=self.element, line=node.sourceline))


def parse_sla(process: etree._Element, file: str) -> tuple[SlaPolicy | None, list[Problem]]:
    """The funnel:sla declaration of a bpmn:process (None when it has none) and every problem in it."""
    ctx = _Parse(file, process.get("id") or "?")
    nodes = process.findall("bpmn:extensionElements/funnel:workflow/funnel:sla", NS)
    for extra in nodes[1:]:
        ctx.problem(extra, "only one funnel:sla is allowed per workflow: merge them")
    if not nodes:
        return None, []
    node = nodes[0]
    tasks = {t.get("id") or "" for t in process.iterfind(".//bpmn:userTask", NS)}
    calendar = (node.get("calendar") or "").strip()
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,100}", calendar):
        ctx.problem(node, f'funnel:sla needs calendar="<name>" (a file stem in workflows/calendars, e.g. default), '
                          f"not {calendar!r}")
    targets = (node.get("targets") or "").strip()
    if not _ID.fullmatch(targets):
        ctx.problem(node, f'funnel:sla needs targets="<id of a DMN decision>" giving hours per clock, not {targets!r}')
    warning = _ratio(ctx, node)
    pause = tuple((node.get("pause") or "").split())
    for state in pause:
        if state not in PAUSE_STATES:
            ctx.problem(node, f"funnel:sla pause={state!r} is not a state that can pause a clock; use "
                              f"{', '.join(PAUSE_STATES)} (or leave pause out)")
    clocks, levels = _children(ctx, node, tasks)
    if not clocks:
        ctx.problem(node, "funnel:sla declares no funnel:clock: add at least one")
    policy = SlaPolicy(calendar, targets, warning, pause, tuple(clocks), tuple(levels))
    return (policy if not ctx.problems else None), ctx.problems


def _ratio(ctx: _Parse, node: etree._Element) -> float:
    text = node.get("warning", "0.75")
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 < value < 1.0:
        ctx.problem(node, f"funnel:sla warning={text!r} must be the share of the target consumed when the warning "
                          "is due, a number between 0 and 1 (e.g. 0.75)")
        return 0.75
    return value


def _children(ctx: _Parse, node: etree._Element, tasks: set[str]) -> tuple[list[ClockSpec], list[Level]]:
    clocks: list[ClockSpec] = []
    levels: list[Level] = []
    for child in node:
        if not isinstance(child.tag, str):
            continue
        local = etree.QName(child).localname
        if etree.QName(child).namespace == FUNNEL_NS and local == "clock":
            clock = _clock(ctx, child, tasks)
            if clock is not None and clock.name in {c.name for c in clocks}:
                ctx.problem(child, f"funnel:clock '{clock.name}' is declared twice")
            elif clock is not None:
                clocks.append(clock)
        elif etree.QName(child).namespace == FUNNEL_NS and local == "escalate":
            level = _level(ctx, child, len(levels))
            if level is not None and level.name in {lv.name for lv in levels}:
                ctx.problem(child, f"funnel:escalate level '{level.name}' is declared twice")
            elif level is not None:
                levels.append(level)
        else:
            ctx.problem(child, f"unknown element {local} inside funnel:sla; use funnel:clock or funnel:escalate")
    return clocks, _ranked(levels)


def _clock(ctx: _Parse, node: etree._Element, tasks: set[str]) -> ClockSpec | None:
    name, title = (node.get("name") or "").strip(), (node.get("title") or "").strip()
    before = len(ctx.problems)
    if not _NAME.fullmatch(name):
        ctx.problem(node, f"funnel:clock name={name!r} must be lower-case letters, digits and _ (e.g. first_response)")
    per = node.get("per", "instance")
    if per not in ("instance", "task"):
        ctx.problem(node, f"funnel:clock per={per!r} must be instance (one clock, started and stopped by events) "
                          "or task (one clock per open task)")
    listed = tuple((node.get("tasks") or "").split())
    start = tuple((node.get("start") or ("created" if per == "instance" else "")).split())
    stop = tuple((node.get("stop") or "").split())
    for task in listed:
        if task not in tasks:
            ctx.problem(node, f"funnel:clock '{name}' lists task '{task}', which is not a user task of this process")
    if per == "task" and (node.get("start") or node.get("stop")):
        ctx.problem(node, f"funnel:clock '{name}' is per task: it starts when each task opens and stops when it "
                          "closes, so leave start and stop out")
    if per == "instance":
        if listed:
            ctx.problem(node, f"funnel:clock '{name}': tasks only applies to per=\"task\" clocks")
        _events(ctx, node, name, "start", start, ("created", "opened"), tasks)
        _events(ctx, node, name, "stop", stop, ("completed",), tasks)
    if len(ctx.problems) > before:
        return None
    return ClockSpec(name, title or name.replace("_", " "), per, listed,
                     start if per == "instance" else (), stop if per == "instance" else ())


def _events(ctx: _Parse, node: etree._Element, name: str, attr: str, values: tuple[str, ...],
            kinds: tuple[str, ...], tasks: set[str]) -> None:
    if attr == "start" and not values:
        ctx.problem(node, f"funnel:clock '{name}' needs start=\"created\" or start=\"opened:<task id>\"")
    for value in values:
        kind, _, task = value.partition(":")
        if value == "created" and "created" in kinds:
            continue
        if kind in kinds and kind != "created" and task in tasks:
            continue
        allowed = " or ".join("created" if k == "created" else f"{k}:<user task id>" for k in kinds)
        ctx.problem(node, f"funnel:clock '{name}' {attr}={value!r}: use {allowed} (task ids of this process)")


def _level(ctx: _Parse, node: etree._Element, position: int) -> Level | None:
    name = (node.get("level") or "").strip()
    before = len(ctx.problems)
    if not _NAME.fullmatch(name):
        ctx.problem(node, f"funnel:escalate level={name!r} must be a lower-case name (e.g. warning, breach, head)")
    at = node.get("at", "")
    if at not in LEVEL_AT:
        ctx.problem(node, f"funnel:escalate at={at!r} must be warning (the warning threshold) or breach (the deadline)")
    after = parse_business_duration(node.get("after", "PT0H"))
    if after is None:
        ctx.problem(node, f"funnel:escalate after={node.get('after')!r} must be business time as PT<hours>H<minutes>M "
                          "(e.g. PT4H); days are ambiguous in business time")
    notify = tuple((node.get("notify") or "").split())
    bad = [n for n in notify if not _NOTIFY.fullmatch(n)]
    if not notify or bad:
        ctx.problem(node, f"funnel:escalate notify={node.get('notify')!r}: list who is told, separated by spaces: "
                          "assignee, manager (the assignee's team manager), role:<role> or user:<login>")
    if len(ctx.problems) > before or after is None:
        return None
    return Level(name, at, after, notify, position)


def _ranked(levels: list[Level]) -> list[Level]:
    """Severity as e-mails show it: warning 0, breach 1, escalations past the breach 2, 3... by their delay."""
    delays = sorted({lv.after for lv in levels if lv.at == "breach" and lv.after > timedelta(0)})
    out = []
    for level in levels:
        severity = 0 if level.at == "warning" else 1 if not level.after else 2 + delays.index(level.after)
        out.append(Level(level.name, level.at, level.after, level.notify, severity))
    return out


def parse_business_duration(text: str) -> timedelta | None:
    """"PT4H", "PT1H30M" -> timedelta; None when it is not hours/minutes."""
    match = _DURATION.fullmatch((text or "").strip())
    if match is None:
        return None
    return timedelta(hours=int(match.group(1) or 0), minutes=int(match.group(2) or 0))


# ---------------------------------------------------------------- targets and calendars


_TARGETS: OrderedDict[tuple[str, int, str], tuple[timedelta | None, dict[str, Any]]] = OrderedDict()
_TARGETS_LOCK = Lock()


def target_of(policy: SlaPolicy, sources: Mapping[str, str], names: Mapping[str, Any]
              ) -> tuple[timedelta | None, dict[str, Any]]:
    """A clock's target from the policy's decision (first matching row; none matching: no deadline), and why.

    Results are remembered by the values of the names the table reads, so re-deriving every open
    clock after each change costs a dictionary lookup unless the tier, priority or stage changed.
    """
    used = decision_names(sources, policy.targets)
    shown = {n: names.get(n) for n in sorted(used)} if used is not None else dict(names)
    key = (policy.targets, _sources_key(sources), json.dumps(shown, sort_keys=True, default=str))
    with _TARGETS_LOCK:
        if key in _TARGETS:
            _TARGETS.move_to_end(key)
            return _TARGETS[key]
    found = _evaluate(policy, sources, names)
    with _TARGETS_LOCK:
        _TARGETS[key] = found
        while len(_TARGETS) > 4096:
            _TARGETS.popitem(last=False)
    return found


def target_inputs(policy: SlaPolicy, sources: Mapping[str, str], names: Mapping[str, Any]) -> str:
    """The values a target depends on (to tell whether a change can move it)."""
    used = decision_names(sources, policy.targets)
    shown = {n: names.get(n) for n in sorted(used)} if used is not None else dict(names)
    return json.dumps(shown, sort_keys=True, default=str)


def _evaluate(policy: SlaPolicy, sources: Mapping[str, str], names: Mapping[str, Any]
              ) -> tuple[timedelta | None, dict[str, Any]]:
    try:
        result = evaluate_decision(sources, policy.targets, names)
    except SpiffError as err:
        raise WorkflowFailed(f"the SLA targets decision '{policy.targets}' failed: {err}") from err
    if not result.matches:
        return None, {"decision": policy.targets, "row": None}
    row = result.matches[0]
    hours = row.outputs.get("hours")
    if isinstance(hours, bool) or not isinstance(hours, int | float) or hours < 0:
        raise WorkflowFailed(f"the SLA targets decision '{policy.targets}' row {row.row} gives hours {hours!r}: "
                             "it must be a number of business hours, 0 or more")
    return timedelta(hours=hours), {"decision": policy.targets, "row": row.row, "hours": hours,
                                    "description": row.description}


def _sources_key(sources: Mapping[str, str]) -> int:
    return hash(tuple(sorted(sources.items())))


def decision_names(sources: Mapping[str, str], decision_id: str) -> frozenset[str] | None:
    """Every name a decision's input expressions and cells read; None when it cannot be told."""
    return _decision_names(decision_id, tuple(sorted(sources.items())))


@functools.lru_cache(maxsize=64)
def _decision_names(decision_id: str, sources: tuple[tuple[str, str], ...]) -> frozenset[str] | None:
    for _, text in sources:
        try:
            root = etree.fromstring(text.encode(), xml_parser())
        except etree.XMLSyntaxError:
            continue
        decision = next((d for d in root.iter("{*}decision") if d.get("id") == decision_id), None)
        if decision is None:
            continue
        texts = [t.text or "" for t in decision.iter("{*}text")]
        found: set[str] = set()
        for source in texts:
            for attempt in (source.replace("?", " v "), f"v {source}"):
                try:
                    tree = ast.parse(attempt.strip() or "None", mode="eval")
                except SyntaxError:
                    continue
                found |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
                break
            else:
                return None
        return frozenset(found - {"v"})
    return None


class Calendars:
    """The business calendars by name, read from a folder at first use (like workflows: restart to reload)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder if folder is not None and folder.is_dir() else SHIPPED_CALENDARS
        self._lock = Lock()
        self._calendars: dict[str, BusinessCalendar] | None = None

    @classmethod
    def beside(cls, workflows_dir: Path) -> Calendars:
        """The calendars folder of a workflows folder; one without calendars uses the shipped ones."""
        return cls(Path(workflows_dir) / "calendars")

    def get(self, name: str) -> BusinessCalendar:
        with self._lock:
            if self._calendars is None:
                self._calendars = load_calendars(self.folder)
            found = self._calendars.get(name)
        if found is None:
            known = ", ".join(sorted(self._calendars)) or "none"
            raise WorkflowFailed(f"the SLA calendar '{name}' does not exist in {self.folder} (calendars: {known}): "
                                 "add the file or correct funnel:sla calendar")
        return found

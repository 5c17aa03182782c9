"""Linter checks for the Python a BPMN file carries: conditions, scripts, loop expressions and timers."""

from __future__ import annotations

import ast
import re
from typing import Literal

from lxml import etree
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from engine.lint_common import NS, Findings, label, local, reason_line, sandbox_reasons

# (xpath relative to a process, mode, what people call it)
EXPRESSIONS: tuple[tuple[str, Literal["eval", "exec"], str], ...] = (
    (".//bpmn:conditionExpression", "eval", "condition"),
    (".//bpmn:conditionalEventDefinition/bpmn:condition", "eval", "event condition"),
    (".//bpmn:scriptTask/bpmn:script", "exec", "script"),
    (".//spiffworkflow:preScript", "exec", "pre-script"),
    (".//spiffworkflow:postScript", "exec", "post-script"),
    (".//bpmn:loopCardinality", "eval", "loop cardinality"),
    (".//bpmn:completionCondition", "eval", "completion condition"),
    (".//bpmn:loopCondition", "eval", "loop condition"),
)
TIMER_KINDS = ("timeDuration", "timeDate", "timeCycle")
_NUM = r"\d+(?:[.,]\d+)?"
ISO_DURATION = re.compile(
    rf"P(?=\d|T\d)(?:{_NUM}Y)?(?:{_NUM}M)?(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?=\d)(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?",
    re.IGNORECASE,
)
LOOKS_ISO = re.compile(r"(R\d*/)?(P(?=[0-9TYMWDHS.,]*\d)[0-9TYMWDHS.,]+|\d{4}-\d{2}-\d{2}\S*)(/\S*)?")
EXAMPLES = {
    "timeDuration": 'a duration such as "PT4H" or "P1DT2H"',
    "timeDate": 'a date and time such as "2025-01-31T09:00:00+01:00"',
    "timeCycle": 'a repetition such as "R3/PT1H" (three times, hourly)',
}


def check_expressions(findings: Findings, process: etree._Element) -> None:
    """Every Python snippet of the process must pass the sandbox before anything runs it."""
    for path, mode, what in EXPRESSIONS:
        for node in process.iterfind(path, NS):
            _check_one(findings, node, mode, what)
    for script_task in process.iterfind(".//bpmn:scriptTask", NS):
        fmt = (script_task.get("scriptFormat") or "").strip()
        if fmt and "python" not in fmt.lower():
            findings.add(script_task, f"script task '{label(script_task)}' says scriptFormat=\"{fmt}\"; "
                                      "the engine runs Python only: rewrite the script in Python")


def _owner(node: etree._Element) -> str:
    """Who an expression belongs to, as people see it in the modeler."""
    parent = node.getparent()
    while parent is not None and local(parent) in ("multiInstanceLoopCharacteristics",
                                                     "standardLoopCharacteristics", "extensionElements",
                                                     "conditionalEventDefinition"):
        parent = parent.getparent()
    if parent is None:
        return "?"
    kind = "sequence flow" if local(parent) == "sequenceFlow" else re.sub(r"(?<!^)([A-Z])", r" \1",
                                                                           local(parent)).lower()
    return f"{kind} '{label(parent)}'"


def _check_one(findings: Findings, node: etree._Element, mode: Literal["eval", "exec"], what: str) -> None:
    text = node.text or ""
    source = text if mode == "exec" else text.strip()
    owner = _owner(node)
    if not source.strip():
        if what != "completion condition":
            default = " (or make this flow the gateway's default)" if what == "condition" else ""
            findings.add(node, f"the {what} of {owner} is empty: write a Python expression{default}")
        return
    reasons = sandbox_reasons(source, mode)
    if not reasons:
        return
    hint = dialect_hint(source, node.get("language")) if mode == "eval" else ""
    shown = source.strip() if "\n" not in source.strip() else source.strip().splitlines()[0] + " ..."
    for reason in reasons:
        quoted = "" if shown in reason else f" (in {shown!r})"
        findings.add(node, f"the {what} of {owner} is refused: {reason}{quoted}{hint}",
                     line=reason_line(reason, node.sourceline) if mode == "exec" else None)


def dialect_hint(source: str, language: str | None = None) -> str:
    """Say which other expression language a refused expression was probably written in."""
    text = source.strip()
    hints = []
    if text.startswith(("${", "#{")):
        hints.append("this is a JUEL/EL expression (${...}); write plain Python, e.g. approved == True")
    elif text.startswith("="):
        hints.append('the leading "=" marks a FEEL expression; write plain Python without it')
    elif re.search(r"(?<![=!<>])=(?!=)", text) and "\n" not in text:
        hints.append("use == to compare")
    if language and "python" not in language.lower():
        hints.append(f"its language attribute says {language}, but the engine evaluates Python")
    return "; " + "; ".join(hints) if hints else ""


def check_timers(findings: Findings, process: etree._Element) -> None:
    """Timer expressions are Python giving an ISO 8601 string; catch the unquoted and the malformed."""
    for timer in process.iterfind(".//bpmn:timerEventDefinition", NS):
        exprs = [c for c in timer if local(c) in TIMER_KINDS]
        if not exprs:
            findings.add(timer, f"the timer of '{label(timer.getparent())}' has no time expression: add a "
                                f"timeDuration with {EXAMPLES['timeDuration']}")
        for node in exprs:
            _check_timer(findings, node, local(node))


def _check_timer(findings: Findings, node: etree._Element, kind: str) -> None:
    text = (node.text or "").strip()
    event = label(node.getparent().getparent()) if node.getparent() is not None else "?"
    where = f"the {kind} of timer '{event}'"
    if not text:
        findings.add(node, f"{where} is empty: write {EXAMPLES[kind]}, with the quotes")
        return
    if LOOKS_ISO.fullmatch(text):
        findings.add(node, f'timer expression {text} is not quoted: write "{text}" '
                           "(timer expressions are Python)")
        return
    try:
        tree = ast.parse(text, mode="eval")
    except SyntaxError:
        tree = None
    if tree is not None and isinstance(tree.body, ast.Constant):
        value = tree.body.value
        if not isinstance(value, str):
            findings.add(node, f"{where} is {text}, not a text: write {EXAMPLES[kind]}, with the quotes")
        elif (problem := iso_problem(kind, value)) is not None:
            findings.add(node, f"{where} is {text}, which {problem}: write {EXAMPLES[kind]}")
        return
    reasons = sandbox_reasons(text, "eval")
    for reason in reasons:
        quoted = "" if text in reason else f" (in {text!r})"
        findings.add(node, f"{where} is refused: {reason}{quoted}{dialect_hint(text)}")
    if not reasons:
        findings.add(node, f"{where} is computed ({text}); it cannot be checked before run time: make sure "
                           f"it gives {EXAMPLES[kind]}", severity="warning")


def iso_problem(kind: str, value: str) -> str | None:
    """Why `value` is not the ISO 8601 text a timer of this kind needs (None when it is fine)."""
    value = value.strip()
    try:
        if kind == "timeDuration":
            if not ISO_DURATION.fullmatch(value):
                return "is not an ISO 8601 duration"
            TimerEventDefinition.parse_iso_duration(value)
        elif kind == "timeDate":
            TimerEventDefinition.get_datetime(value)
        else:
            if not value.upper().startswith("R") or "/" not in value:
                return "is not an ISO 8601 repetition (R<count>/<duration>)"
            TimerEventDefinition.parse_iso_recurring_interval(value)
    except Exception:
        return {"timeDuration": "is not an ISO 8601 duration", "timeDate": "is not an ISO 8601 date and time",
                "timeCycle": "is not an ISO 8601 repetition"}[kind]
    return None

"""Shared pieces of the workflow linter: namespaces, the problem collector and guarded checks.

Kept apart from engine/lint.py so the BPMN and DMN checks can share them without import cycles.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from lxml import etree

from engine import sandbox
from engine.errors import Problem

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
BPMNDI_NS = "http://www.omg.org/spec/BPMN/20100524/DI"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
FUNNEL_NS = "urn:funnel:1.0"
NS = {"bpmn": BPMN_NS, "bpmndi": BPMNDI_NS, "spiffworkflow": SPIFF_NS, "funnel": FUNNEL_NS}

Severity = Literal["error", "warning"]


def element_id(node: etree._Element | None) -> str | None:
    """The id of the node or its closest ancestor that has one: what a modeler can search for."""
    while node is not None:
        if isinstance(node.tag, str) and node.get("id"):
            return node.get("id")
        node = node.getparent()
    return None


def label(node: etree._Element | None) -> str:
    """How people know an element: its name if it has one, else its id."""
    if node is None:
        return "?"
    return " ".join((node.get("name") or "").split()) or node.get("id") or local(node)


def local(node: etree._Element) -> str:
    """The local tag name (`userTask`), without namespace."""
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


def short_tags(text: str) -> str:
    """Replace `{namespace}tag` in library messages with the prefixes people see in their files."""
    prefixes = {BPMN_NS: "bpmn", BPMNDI_NS: "bpmndi", SPIFF_NS: "spiffworkflow", FUNNEL_NS: "funnel"}
    return re.sub(r"\{([^}]*)\}", lambda m: f"{prefixes.get(m.group(1), 'ns')}:", text)


@dataclass
class Findings:
    """Collects the problems of one file while the checks run."""

    file: str
    problems: list[Problem] = field(default_factory=list)

    def add(
        self,
        node: etree._Element | None,
        message: str,
        *,
        severity: Severity = "error",
        element: str | None = None,
        line: int | None = None,
    ) -> None:
        self.problems.append(
            Problem(
                file=self.file,
                message=message,
                element=element or element_id(node),
                line=line or (node.sourceline if node is not None else None),
                severity=severity,
            )
        )

    def guarded(self, check: str, action: Callable[[], None]) -> None:
        """Run one check; a bug or a surprise in it becomes a problem, never a traceback."""
        try:
            action()
        except Exception as err:
            self.add(None, f"the {check} check could not complete ({type(err).__name__}: {err}); "
                           "fix the other problems and validate again")

    def errors(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")


def sandbox_reasons(source: str, mode: Literal["eval", "exec"] = "eval") -> list[str]:
    """The sandbox's reasons to refuse `source`; a one-line source loses the redundant 'line 1: '."""
    try:
        reasons = sandbox.check(source, mode=mode)
        if reasons and mode == "eval" and all("invalid syntax" in r for r in reasons):
            # `import os` is a syntax error in a condition; the sandbox's rule says more
            rules = sandbox.check(source, mode="exec")
            if rules and not any("invalid syntax" in r for r in rules):
                reasons = rules
    except Exception as err:
        return [f"the expression could not be checked ({type(err).__name__}: {err})"]
    if "\n" not in source.strip():
        reasons = [r.removeprefix("line 1: ") for r in reasons]
    return list(reasons)


def reason_line(reason: str, start: int | None) -> int | None:
    """The file line a 'line N: ...' reason points at, given the line where the source starts."""
    match = re.match(r"line (\d+):", reason)
    if start is None or not match:
        return start
    return start + int(match.group(1)) - 1

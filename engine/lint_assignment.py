"""Linter check for assignment declarations: every funnel:assignment names a decision that exists.

Called by engine/lint.py for each runnable process, so `funnel validate` reports a typo before an
instance refuses at run time.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree

from engine.lint_common import NS, Findings
from engine.spiff import xml_parser


def decisions_in(companions: Mapping[str, bytes]) -> dict[str, str]:
    """Decision id -> the DMN file defining it (unreadable files are reported in their own verdicts)."""
    found: dict[str, str] = {}
    for name, content in sorted(companions.items()):
        try:
            root = etree.fromstring(content, xml_parser())
        except etree.XMLSyntaxError:
            continue
        for decision in root.iter("{*}decision"):
            found.setdefault(decision.get("id") or "", name)
    return found


def check_references(findings: Findings, process: etree._Element, companions: Mapping[str, bytes]) -> None:
    """Report each funnel:assignment whose decision no DMN file beside the workflow defines."""
    known = decisions_in(companions)
    for node in process.iterfind(".//funnel:assignment", NS):
        decision = (node.get("decision") or "").strip()
        if decision and decision not in known:
            choices = ", ".join(sorted(k for k in known if k)) or "none"
            findings.add(node, f"funnel:assignment names decision '{decision}', which no DMN file beside the "
                               f"workflow defines (decisions found: {choices}): add it or correct the id")

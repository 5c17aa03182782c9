"""Sentences the history shows but does not store: each is rendered, when read, from the facts its entry keeps.

An assignment's audit entry keeps the whole explanation (rule, inputs, candidates and the note on the choice)
packed in `changes`. Its readable paragraph, ~250 B of plain text and the largest text in the history, used to
be stored beside it in `reason`; it is now rendered from the explanation whenever the history is read, so one
piece of code writes the sentence for the history, the explanations and the manager's alert. Entries written
before keep the reason they stored, and it is shown as stored.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm.attributes import set_committed_value

from engine.models import AuditEvent

ASSIGNED = "assigned"


def cells_text(cells: Mapping[str, Any]) -> str:
    """A decision row's input cells as the process owner wrote them ("Region \"north\", Amount >= 100000")."""
    return ", ".join(f"{k} {v}" for k, v in cells.items()) or "matches everything"


def assignment_summary(explanation: Mapping[str, Any]) -> str:
    """One readable paragraph from an assignment's explanation: the rule, the choice and everyone passed over."""
    note = str(explanation.get("note") or "")
    rule = explanation.get("rule")
    if rule is None:
        values = ", ".join(f"{k} {v!r}" for k, v in (explanation.get("inputs") or {}).items())
        return f"{note[:1].upper()}{note[1:]} (inputs: {values})."
    why = f": {rule['description']}" if rule.get("description") else ""
    head = f"Rule {rule['row']} of {explanation.get('decision')} ({cells_text(rule.get('cells') or {})}{why})"
    passed = [f"{c['login']} ({c['reason']})" for c in explanation.get("candidates") or ()
              if c.get("outcome") == "passed"]
    tail = f" Passed over: {', '.join(passed)}." if passed else ""
    return f"{head}: {note}.{tail}"


def reason_of(event: AuditEvent) -> str | None:
    """The entry's reason: as stored, or rendered from its explanation (assignments written since it is not stored)."""
    if event.reason is None and event.kind == ASSIGNED:
        explanation = (event.changes or {}).get("explanation")
        if isinstance(explanation, Mapping) and "note" in explanation:
            return assignment_summary(explanation)
    return event.reason


def readable(events: Iterable[AuditEvent]) -> list[AuditEvent]:
    """The entries with every reason filled in as `reason_of` says (set as loaded: nothing is written back)."""
    out = list(events)
    for event in out:
        reason = reason_of(event)
        if reason is not event.reason:
            set_committed_value(event, "reason", reason)
    return out

"""The rules for changes that are not stage moves: waiting on the customer and closing early.

Both are allowed only where the definition declares them (`funnel:policy waiting="allowed"`,
`close="with-reason"`). Funnel writes them through its one optimistic-concurrency transaction
(`Funnel._write`); this module decides whether a call is in order and what gets audited.

Waiting is a state of the instance (`instance.waiting_since`), entered and left explicitly, each
audited with its reason, so SLA clocks can pause. Any stage move (advance, move, skip) or an early
close of a waiting instance ends the wait first, audited as `waiting_ended` with the reason
"ended by ...": staff who record the customer's answer need not also remember to end the wait.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from engine.errors import Conflict, InvalidInput, TransitionRefused
from engine.models import AuditEvent, Instance
from engine.stages import WorkflowMeta

WAITING_STARTED = "waiting_started"
WAITING_ENDED = "waiting_ended"
CLOSED_EARLY = "closed_early"
# Changes after which an instance is no longer waiting on the customer.
ENDS_WAIT = frozenset({"advanced", "moved_back", "skipped", CLOSED_EARLY})
MAX_REASON = 2000
UNANSWERED = "unanswered"  # data field listing the open tasks (their items) an early close cancelled


def clean_reason(reason: Any) -> str | None:
    """A reason as stored: trimmed text or None; anything but text is refused naming the field."""
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise InvalidInput(f"reason must be text, not {type(reason).__name__}", "reason")
    text = reason.strip()
    if len(text) > MAX_REASON:
        raise InvalidInput(f"reason is longer than {MAX_REASON} characters", "reason")
    return text or None


def waiting_change(row: Instance, meta: WorkflowMeta, *, waiting: Any, reason: Any) -> tuple[str, str | None]:
    """Check a set_waiting call against the definition and the instance; return (audit kind, reason)."""
    if not isinstance(waiting, bool):
        raise InvalidInput("waiting must be true (start waiting) or false (end the wait)", "waiting")
    check_waiting_allowed(meta)
    text = clean_reason(reason)
    if waiting and row.waiting_since is not None:
        raise Conflict(
            f"instance {row.id} is already waiting on the customer (since {row.waiting_since.isoformat()}): "
            "end the wait (waiting=false) before starting another",
            current_version=row.row_version,
        )
    if not waiting and row.waiting_since is None:
        raise Conflict(
            f"instance {row.id} is not waiting on the customer, so there is no wait to end: start one "
            "with waiting=true",
            current_version=row.row_version,
        )
    if waiting and text is None:
        raise InvalidInput("starting to wait on the customer needs a reason (what the customer is to "
                           "provide); it is audited", "reason")
    return (WAITING_STARTED if waiting else WAITING_ENDED), text


def check_waiting_allowed(meta: WorkflowMeta) -> None:
    """Waiting pauses SLA clocks, so only workflows that declare it may wait."""
    if meta.waiting != "allowed":
        raise TransitionRefused(
            f"{meta.title} does not allow waiting on the customer: its definition would need "
            '<funnel:policy waiting="allowed"/>'
        )


def close_reason(meta: WorkflowMeta, reason: Any) -> str:
    """Check a close_early call against the definition; return the reason to audit."""
    if meta.close != "with-reason":
        raise TransitionRefused(
            f"{meta.title} cannot be closed early: its definition would need "
            '<funnel:policy close="with-reason"/>; finish its open tasks instead'
        )
    text = clean_reason(reason)
    if text is None:
        raise InvalidInput("closing early needs a reason (why the open tasks no longer matter); it is "
                           "audited", "reason")
    return text


def end_wait(row: Instance, kind: str) -> bool:
    """Clear the wait of an instance that a stage move or early close is changing; True if it waited."""
    if kind not in ENDS_WAIT or row.waiting_since is None:
        return False
    row.waiting_since = None
    return True


def wait_ended_event(row: Instance, *, kind: str, now: datetime, actor: str, stage: str | None) -> AuditEvent:
    """The audit entry for a wait ended implicitly by another change (written just before that change's)."""
    assert row.id is not None
    return AuditEvent(
        instance_id=row.id, at=now, actor=actor, kind=WAITING_ENDED, from_stage=stage, to_stage=stage,
        changes={}, reason=f"ended by {kind.replace('_', ' ')}", row_version=row.row_version,
    )


def waiting_started_event(row: Instance, *, now: datetime, actor: str, reason: str) -> AuditEvent:
    """The audit entry of an instance created already waiting on the customer."""
    assert row.id is not None
    return AuditEvent(
        instance_id=row.id, at=now, actor=actor, kind=WAITING_STARTED, from_stage=row.stage,
        to_stage=row.stage, changes={}, reason=reason, row_version=row.row_version,
    )

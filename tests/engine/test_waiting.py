"""Waiting on the customer: entered and left explicitly, audited, refused out of order, safe under races."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from engine.bootstrap import open_funnel
from engine.errors import Conflict, FunnelError, InvalidInput, NotFound, TransitionRefused
from engine.instances import Funnel
from engine.lint import lint_document
from engine.models import AuditEvent
from engine.service_metrics import ticket_metrics
from engine.stages import WorkflowMeta
from tests.conftest import FakeClock, make_settings
from tests.factories import linear_workflow, start_opportunity
from tests.service_factories import (
    ACCEPT,
    FIRST_RESPONSE,
    INTAKE,
    count_instances,
    instance_row,
    snapshot,
    start_ticket,
    ticket_at,
)

REASON = "Waiting for the customer's photos of the damaged coil"


def aware(moment: Any) -> Any:
    return moment.replace(tzinfo=None)


# ---------------------------------------------------------------- entering and leaving


def test_given_a_ticket_when_it_starts_and_stops_waiting_then_both_are_recorded_with_reasons(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given
    view = ticket_at(funnel, "First response")
    # when
    clock.advance(minutes=5)
    waiting = funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=f"  {REASON} ")
    # then the instance waits, at the same stage with the same open task, one version further
    assert aware(instance_row(funnel, view.id).waiting_since) == aware(clock.now)
    assert (waiting.stage, waiting.row_version) == ("First response", view.row_version + 1)
    assert [t.id for t in waiting.open_tasks] == [t.id for t in view.open_tasks]
    # when
    clock.advance(hours=2)
    resumed = funnel.set_waiting(view.id, waiting=False, actor="desk2", reason="Photos received",
                                 expected_version=waiting.row_version)
    # then
    assert instance_row(funnel, view.id).waiting_since is None
    assert resumed.row_version == view.row_version + 2
    events = [(e.kind, e.actor, e.reason, e.from_stage, e.to_stage, e.changes) for e in funnel.history(view.id)][-2:]
    assert events == [
        ("waiting_started", "desk1", REASON, "First response", "First response", {}),
        ("waiting_ended", "desk2", "Photos received", "First response", "First response", {}),
    ]
    assert ticket_metrics(funnel.engine, view.id).waiting_seconds == 2 * 3600


def test_given_a_wait_ended_without_a_reason_then_it_is_recorded_without_one(funnel: Funnel) -> None:
    view = ticket_at(funnel, "Resolution")
    funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=REASON)
    funnel.set_waiting(view.id, waiting=False, actor="desk1", reason=None)
    assert funnel.history(view.id)[-1].reason is None


def test_given_a_waiting_ticket_when_advanced_then_the_wait_ends_first_and_is_audited(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given
    view = ticket_at(funnel, "First response")
    funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=REASON)
    clock.advance(minutes=45)
    # when the answer is recorded without ending the wait
    view = funnel.advance(view.id, FIRST_RESPONSE, actor="desk2")
    # then
    assert instance_row(funnel, view.id).waiting_since is None
    assert view.stage == "Resolution"
    events = [(e.kind, e.reason, e.from_stage, e.to_stage) for e in funnel.history(view.id)][-3:]
    assert events == [
        ("waiting_started", REASON, "First response", "First response"),
        ("waiting_ended", "ended by advanced", "First response", "First response"),
        ("advanced", None, "First response", "Resolution"),
    ]
    metrics = ticket_metrics(funnel.engine, view.id)
    assert metrics.waiting_seconds == 45 * 60


def test_given_a_ticket_created_waiting_then_it_waits_from_its_creation(funnel: Funnel, clock: FakeClock) -> None:
    # when
    view = start_ticket(funnel, data=INTAKE, waiting=True, waiting_reason=REASON)
    # then: one version, two audit entries
    assert view.row_version == 1 and view.stage == "Intake"
    assert aware(instance_row(funnel, view.id).waiting_since) == aware(clock.now)
    assert [(e.kind, e.reason, e.row_version) for e in funnel.history(view.id)] == [
        ("created", None, 1), ("waiting_started", REASON, 1),
    ]
    # and the wait counts against nothing
    clock.advance(hours=1)
    funnel.set_waiting(view.id, waiting=False, actor="desk1", reason="Customer called back")
    assert ticket_metrics(funnel.engine, view.id).waiting_seconds == 3600


def test_given_a_whole_ticket_with_waits_when_closed_then_the_open_wait_is_ended(
    funnel: Funnel, clock: FakeClock
) -> None:
    view = ticket_at(funnel, "Customer confirmation")
    funnel.set_waiting(view.id, waiting=True, actor="desk1", reason="Waiting for the customer's verdict")
    clock.advance(days=2)
    view = funnel.advance(view.id, ACCEPT, actor="desk1")
    assert view.status == "closed" and instance_row(funnel, view.id).waiting_since is None
    metrics = ticket_metrics(funnel.engine, view.id)
    assert (metrics.waiting_seconds, metrics.handling_seconds) == (2 * 86400, 0)


def test_given_a_workflow_declaring_both_when_a_waiting_instance_is_closed_early_then_the_wait_ends_first(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    # given a generic two-stage workflow that allows waiting and early close, and an instance created waiting
    (tmp_path / "two_step.bpmn").write_bytes(
        linear_workflow().replace(b'skip="never"/>', b'skip="never" waiting="allowed" close="with-reason"/>'))
    generic = open_funnel(make_settings(db_url, tmp_path), clock=clock)
    try:
        view = generic.start("two_step", {}, actor="owner", waiting=True, waiting_reason=REASON)
        # when
        clock.advance(minutes=10)
        closed = generic.close_early(view.id, actor="owner", reason="No longer needed")
        # then
        assert closed.status == "closed_early" and closed.data["unanswered"] == ["Stage 1"]
        assert [(e.kind, e.reason, e.row_version) for e in generic.history(view.id)] == [
            ("created", None, 1), ("waiting_started", REASON, 1),
            ("waiting_ended", "ended by closed early", 2), ("closed_early", "No longer needed", 2),
        ]
        assert instance_row(generic, view.id).waiting_since is None
    finally:
        generic.engine.dispose()


# ---------------------------------------------------------------- refusals


def test_given_a_ticket_not_waiting_when_the_wait_is_ended_then_conflict_says_what_to_do(funnel: Funnel) -> None:
    view = ticket_at(funnel, "Triage and routing")
    before = snapshot(funnel, view.id)
    with pytest.raises(Conflict, match=r"is not waiting on the customer.*start one with waiting=true") as err:
        funnel.set_waiting(view.id, waiting=False, actor="desk1", reason="done")
    assert err.value.current_version == view.row_version
    assert snapshot(funnel, view.id) == before


def test_given_a_waiting_ticket_when_waiting_starts_again_then_conflict_says_what_to_do(funnel: Funnel) -> None:
    view = ticket_at(funnel, "Triage and routing")
    funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=REASON)
    before = snapshot(funnel, view.id)
    with pytest.raises(Conflict, match=r"already waiting on the customer \(since .*\): end the wait"):
        funnel.set_waiting(view.id, waiting=True, actor="desk1", reason="another")
    assert snapshot(funnel, view.id) == before


def test_given_a_closed_ticket_when_set_waiting_then_conflict_and_nothing_written(funnel: Funnel) -> None:
    view = funnel.advance(ticket_at(funnel, "Customer confirmation").id, ACCEPT, actor="desk1")
    before = snapshot(funnel, view.id)
    for waiting in (True, False):
        with pytest.raises(Conflict, match=f"instance {view.id} is closed; it cannot wait on the customer"):
            funnel.set_waiting(view.id, waiting=waiting, actor="desk1", reason=REASON)
    assert snapshot(funnel, view.id) == before


def test_given_a_workflow_without_waiting_when_set_waiting_then_refused_naming_the_policy(funnel: Funnel) -> None:
    view = start_opportunity(funnel)
    before = snapshot(funnel, view.id)
    with pytest.raises(TransitionRefused, match=r'Sales funnel does not allow waiting.*waiting="allowed"'):
        funnel.set_waiting(view.id, waiting=True, actor="rep1", reason=REASON)
    assert snapshot(funnel, view.id) == before


@pytest.mark.parametrize(
    ("waiting", "reason", "field"),
    [(True, None, "reason"), (True, "   ", "reason"), ("yes", REASON, "waiting"), (True, 42, "reason"),
     (True, "x" * 2001, "reason")],
)
def test_given_bad_input_when_set_waiting_then_invalid_input_names_the_field(
    funnel: Funnel, waiting: Any, reason: Any, field: str
) -> None:
    view = ticket_at(funnel, "Intake")
    before = snapshot(funnel, view.id)
    with pytest.raises(InvalidInput) as err:
        funnel.set_waiting(view.id, waiting=waiting, actor="desk1", reason=reason)
    assert err.value.field == field
    assert snapshot(funnel, view.id) == before


def test_given_a_stale_version_or_unknown_id_when_set_waiting_then_refused(funnel: Funnel) -> None:
    view = ticket_at(funnel, "Triage and routing")
    with pytest.raises(Conflict, match=f"is at version {view.row_version}, not 1"):
        funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=REASON, expected_version=1)
    with pytest.raises(NotFound):
        funnel.set_waiting(999, waiting=True, actor="desk1", reason=REASON)


@pytest.mark.parametrize(("workflow", "reason", "error"), [
    ("sales_funnel", REASON, TransitionRefused), ("service_request", None, InvalidInput),
])
def test_given_a_start_waiting_that_is_refused_then_no_instance_is_written(
    funnel: Funnel, workflow: str, reason: str | None, error: type[Exception]
) -> None:
    with pytest.raises(error):
        funnel.start(workflow, {}, actor="desk1", waiting=True, waiting_reason=reason)
    assert count_instances(funnel) == 0


# ---------------------------------------------------------------- concurrency


def race(funnel: Funnel, instance_id: int, n: int, **kwargs: Any) -> list[Any]:
    """Run `n` set_waiting calls on one instance at the same moment; return views or errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = funnel.set_waiting(instance_id, actor=f"desk{i}", **kwargs)
        except FunnelError as err:
            results[i] = err

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


@pytest.mark.parametrize("expected", [True, False])
def test_given_two_simultaneous_set_waiting_calls_then_exactly_one_wins(funnel: Funnel, expected: bool) -> None:
    # given
    view = ticket_at(funnel, "Triage and routing")
    version = view.row_version
    # when two people start waiting at the same moment
    kwargs: dict[str, Any] = {"waiting": True, "reason": REASON}
    if expected:
        kwargs["expected_version"] = version
    results = race(funnel, view.id, 2, **kwargs)
    # then one wins; the other is told to reload (or that it already waits)
    wins = [r for r in results if not isinstance(r, Exception)]
    losses = [r for r in results if isinstance(r, Exception)]
    assert len(wins) == 1 and len(losses) == 1
    assert isinstance(losses[0], Conflict) and losses[0].current_version == version + 1
    with Session(funnel.engine) as session:
        kinds = session.exec(select(AuditEvent.kind).where(AuditEvent.instance_id == view.id)).all()
    assert kinds.count("waiting_started") == 1
    assert instance_row(funnel, view.id).row_version == version + 1


# ---------------------------------------------------------------- the declaration


def test_given_policy_values_when_linted_then_unknown_ones_are_reported() -> None:
    content = linear_workflow().replace(b'skip="never"/>', b'skip="never" waiting="sometimes" close="maybe"/>')
    messages = [p.message for p in lint_document(content, "bad.bpmn").problems]
    assert "funnel:policy waiting='sometimes' must be one of never, allowed" in messages
    assert "funnel:policy close='maybe' must be one of never, with-reason" in messages


def test_given_stored_metadata_from_before_the_policy_then_waiting_and_close_default_to_never() -> None:
    meta = WorkflowMeta.from_dict({"process_id": "p", "title": "P", "policy": {"backward": "with-reason"}})
    assert (meta.waiting, meta.close) == ("never", "never")
    declared = WorkflowMeta(process_id="p", title="P", waiting="allowed", close="with-reason")
    assert WorkflowMeta.from_dict(declared.to_dict()) == declared

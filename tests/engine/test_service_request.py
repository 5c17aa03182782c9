"""Service requests (tickets) end to end: stages, criteria, reopening by rejection, and ticket metrics."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import InvalidInput, NotFound, TransitionRefused
from engine.instances import Funnel
from engine.service_metrics import ticket_metrics, ticket_metrics_for
from engine.spiff import Workflow
from tests.conftest import FakeClock
from tests.factories import start_opportunity
from tests.service_factories import (
    ACCEPT,
    FIRST_RESPONSE,
    INTAKE,
    RESOLUTION,
    STAGE_DATA,
    TICKET_STAGES,
    TRIAGE,
    instance_row,
    reject,
    snapshot,
    start_ticket,
    task_rows,
    ticket_at,
)


def criteria_of(funnel: Funnel, stage: str) -> dict[str, str]:
    meta = funnel.definitions.latest("service_request").meta
    found = meta.stage_named(stage)
    assert found is not None
    return {c.name: c.message for c in found.criteria}


def restored_stage(funnel: Funnel, instance_id: int) -> list[str]:
    """The stage names the stored workflow state has open, after a round trip through the database."""
    row = instance_row(funnel, instance_id)
    wf = Workflow.restore(funnel.definitions.get(row.definition_version_id).specs, row.state)
    return [t.task_spec.bpmn_name for t in wf.ready_human_tasks()]


# ---------------------------------------------------------------- happy path


def test_given_a_new_request_when_each_stage_is_satisfied_then_it_closes_with_its_history(funnel: Funnel) -> None:
    # given
    view = start_ticket(funnel)
    assert (view.stage, view.stage_order, view.status) == ("Intake", 1, "running")
    assert [(t.name, t.role, t.lane) for t in view.open_tasks] == [("Intake", "service_desk", "Service desk")]
    # when each stage is advanced with valid data
    for order, data in enumerate(STAGE_DATA, start=1):
        assert view.stage == TICKET_STAGES[order - 1]
        view = funnel.advance(view.id, data, actor="desk1")
        if order < len(STAGE_DATA):
            assert (view.stage, view.stage_order) == (TICKET_STAGES[order], order + 1)
            assert [t.stage for t in view.open_tasks] == [TICKET_STAGES[order]]
            assert view.open_tasks[0].role == "service_desk"
    # then
    assert view.status == "closed" and view.open_tasks == []
    assert view.data["reopen_count"] == 0
    assert view.data["resolution_history"] == [
        {"round": 1, "resolution": RESOLUTION["resolution"], "accepted": True, "rejection_reason": None,
         "satisfaction": 4},
    ]
    kinds = [(e.kind, e.from_stage, e.to_stage) for e in funnel.history(view.id)]
    assert kinds == [("created", None, "Intake")] + [
        ("advanced", TICKET_STAGES[i], TICKET_STAGES[i + 1]) for i in range(4)
    ] + [("advanced", "Customer confirmation", "closed")]
    assert all(t.status == "completed" and t.completed_by == "desk1" for t in task_rows(funnel, view.id))


def test_given_a_request_in_resolution_when_restored_from_the_database_then_the_loop_resumes(
    funnel: Funnel,
) -> None:
    view = ticket_at(funnel, "Resolution")
    assert restored_stage(funnel, view.id) == ["Resolution"]
    view = funnel.advance(view.id, RESOLUTION, actor="desk1")
    assert restored_stage(funnel, view.id) == ["Customer confirmation"]


# ---------------------------------------------------------------- criteria


@pytest.mark.parametrize(
    ("stage", "data", "criterion"),
    [
        ("Intake", {**INTAKE, "customer_name": None}, "customer_known"),
        ("Intake", {**INTAKE, "contact_name": " "}, "contact_known"),
        ("Intake", {**INTAKE, "channel": "fax"}, "channel_known"),
        ("Intake", {**INTAKE, "category": "billing"}, "category_valid"),
        ("Intake", {**INTAKE, "priority": "asap"}, "priority_valid"),
        ("Intake", {**INTAKE, "description": ""}, "description_given"),
        ("Triage and routing", {"routed_to": ""}, "routed"),
        ("Triage and routing", {**TRIAGE, "category": "other"}, "category_valid"),
        ("First response", {"first_response": None}, "first_response_given"),
        ("Resolution", {"resolution": "  "}, "resolution_recorded"),
        ("Customer confirmation", {"resolution_accepted": "yes"}, "answer_recorded"),
        ("Customer confirmation", {"resolution_accepted": True}, "satisfaction_scored"),
        ("Customer confirmation", {"resolution_accepted": True, "satisfaction": 0}, "satisfaction_scored"),
        ("Customer confirmation", {"resolution_accepted": True, "satisfaction": 6}, "satisfaction_scored"),
        ("Customer confirmation", {"resolution_accepted": True, "satisfaction": 3.5}, "satisfaction_scored"),
        ("Customer confirmation", {"resolution_accepted": True, "satisfaction": 4.0}, "satisfaction_scored"),
        ("Customer confirmation", {"resolution_accepted": True, "satisfaction": "4"}, "satisfaction_scored"),
        ("Customer confirmation", {"resolution_accepted": True, "satisfaction": True}, "satisfaction_scored"),
        ("Customer confirmation", {"resolution_accepted": False}, "rejection_reason"),
        ("Customer confirmation", {"resolution_accepted": False, "rejection_reason": " "}, "rejection_reason"),
    ],
)
def test_given_one_unmet_criterion_when_advancing_then_refused_with_its_message_and_nothing_written(
    funnel: Funnel, stage: str, data: dict[str, Any], criterion: str
) -> None:
    # given a request in `stage` whose submission breaks exactly one criterion
    view = ticket_at(funnel, stage)
    before = snapshot(funnel, view.id)
    # when
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, data, actor="desk1")
    # then
    [unmet] = refused.value.unmet
    assert unmet.criterion == criterion
    assert unmet.message == criteria_of(funnel, stage)[criterion]
    assert f"cannot leave stage '{stage}'" in refused.value.message
    assert snapshot(funnel, view.id) == before


def test_given_an_empty_intake_when_advancing_then_every_unmet_criterion_is_listed(funnel: Funnel) -> None:
    view = start_ticket(funnel)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, {}, actor="desk1")
    assert [u.criterion for u in refused.value.unmet] == [
        "customer_known", "contact_known", "channel_known", "category_valid", "priority_valid", "description_given",
    ]
    assert "category_valid: Choose the category (category): quality_objection, technical_service, delivery or " \
           "complaint." in str(refused.value)


def test_given_a_quality_objection_when_resolving_then_its_root_cause_is_required(funnel: Funnel) -> None:
    view = ticket_at(funnel, "Resolution", intake={"category": "quality_objection"})
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, RESOLUTION, actor="desk1")
    assert [u.criterion for u in refused.value.unmet] == ["root_cause"]
    view = funnel.advance(view.id, {**RESOLUTION, "root_cause": "Wrong annealing temperature"}, actor="desk1")
    assert view.stage == "Customer confirmation"


@pytest.mark.parametrize("satisfaction", [1, 5])
def test_given_the_bounds_of_the_score_when_accepting_then_they_are_accepted(funnel: Funnel, satisfaction: int) -> None:
    view = ticket_at(funnel, "Customer confirmation")
    view = funnel.advance(view.id, {"resolution_accepted": True, "satisfaction": satisfaction}, actor="desk1")
    assert view.status == "closed" and view.data["satisfaction"] == satisfaction


# ---------------------------------------------------------------- reopening


def test_given_a_rejected_resolution_twice_when_finally_accepted_then_history_and_reopens_are_kept(
    funnel: Funnel,
) -> None:
    # given
    view = ticket_at(funnel, "Customer confirmation")
    for round_no, resolver in enumerate(["desk2", "desk3"], start=1):
        # when the customer rejects the resolution
        view = funnel.advance(view.id, reject(f"reason {round_no}"), actor="desk1")
        # then it is reopened at Resolution, with the round on record and a fresh resolution to write
        assert (view.stage, view.stage_order, view.status) == ("Resolution", 4, "running")
        assert [t.name for t in view.open_tasks] == ["Resolution"]
        assert restored_stage(funnel, view.id) == ["Resolution"]
        assert view.data["reopen_count"] == round_no
        assert [r["rejection_reason"] for r in view.data["resolution_history"]] == [
            f"reason {n}" for n in range(1, round_no + 1)
        ]
        assert view.data["resolution"] is None and view.data["resolution_accepted"] is None
        view = funnel.advance(view.id, {"resolution": f"fix {round_no + 1}"}, actor=resolver)
        assert view.stage == "Customer confirmation"
    view = funnel.advance(view.id, ACCEPT, actor="desk1")
    # then
    assert view.status == "closed"
    assert [(r["round"], r["resolution"], r["accepted"]) for r in view.data["resolution_history"]] == [
        (1, RESOLUTION["resolution"], False), (2, "fix 2", False), (3, "fix 3", True),
    ]
    moves = [(e.kind, e.from_stage, e.to_stage) for e in funnel.history(view.id)][4:]
    assert moves == [
        ("advanced", "Resolution", "Customer confirmation"),
        ("advanced", "Customer confirmation", "Resolution"),
        ("advanced", "Resolution", "Customer confirmation"),
        ("advanced", "Customer confirmation", "Resolution"),
        ("advanced", "Resolution", "Customer confirmation"),
        ("advanced", "Customer confirmation", "closed"),
    ]
    rows = [(t.stage, t.status, t.completed_by) for t in task_rows(funnel, view.id)][3:]
    assert rows == [
        ("Resolution", "completed", "desk1"), ("Customer confirmation", "completed", "desk1"),
        ("Resolution", "completed", "desk2"), ("Customer confirmation", "completed", "desk1"),
        ("Resolution", "completed", "desk3"), ("Customer confirmation", "completed", "desk1"),
    ]
    metrics = ticket_metrics(funnel.engine, view.id)
    assert (metrics.reopen_count, metrics.resolved_by, metrics.satisfaction) == (2, "desk3", 4)


def test_given_a_reopened_request_when_confirming_without_an_answer_then_the_old_answer_does_not_count(
    funnel: Funnel,
) -> None:
    view = ticket_at(funnel, "Customer confirmation")
    view = funnel.advance(view.id, reject(), actor="desk1")
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, {}, actor="desk1")
    assert [u.criterion for u in refused.value.unmet] == ["resolution_recorded"]
    view = funnel.advance(view.id, {"resolution": "second try"}, actor="desk1")
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, {"rejection_reason": "again"}, actor="desk1")
    assert [u.criterion for u in refused.value.unmet] == ["answer_recorded"]


def test_given_ten_rejected_rounds_when_the_loop_maximum_is_reached_then_it_closes_unresolved(
    funnel: Funnel,
) -> None:
    view = ticket_at(funnel, "Resolution")
    for round_no in range(1, 11):
        view = funnel.advance(view.id, {"resolution": f"fix {round_no}"}, actor="desk1")
        view = funnel.advance(view.id, reject(f"no {round_no}"), actor="desk1")
    assert view.status == "closed_unresolved" and view.open_tasks == []
    assert len(view.data["resolution_history"]) == 10 and view.data["reopen_count"] == 9
    metrics = ticket_metrics(funnel.engine, view.id)
    assert (metrics.outcome, metrics.satisfaction, metrics.reopen_count) == ("closed_unresolved", None, 9)


# ---------------------------------------------------------------- metrics


def test_given_a_ticket_with_a_wait_when_closed_then_its_metrics_take_the_wait_out(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a request created at T0
    start = clock.now
    view = start_ticket(funnel, actor="desk1", data=INTAKE)
    view = funnel.advance(view.id, {}, actor="desk1")
    clock.advance(minutes=20)
    view = funnel.advance(view.id, TRIAGE, actor="desk1")
    clock.advance(minutes=40)  # first response after 1 h
    view = funnel.advance(view.id, FIRST_RESPONSE, actor="desk1")
    clock.advance(minutes=30)
    funnel.set_waiting(view.id, waiting=True, actor="desk2", reason="Waiting for the customer's log files")
    clock.advance(hours=3)
    funnel.set_waiting(view.id, waiting=False, actor="desk2", reason="Log files received")
    clock.advance(minutes=30)
    view = funnel.advance(view.id, RESOLUTION, actor="desk2")
    clock.advance(hours=1)
    # when the customer accepts, 5.5 h after creation
    view = funnel.advance(view.id, {"resolution_accepted": True, "satisfaction": 5}, actor="desk1")
    # then
    metrics = ticket_metrics(funnel.engine, view.id)
    assert metrics.created_at.replace(tzinfo=None) == start.replace(tzinfo=None)
    assert (metrics.first_response_seconds, metrics.first_response_by) == (3600, "desk1")
    assert metrics.waiting_seconds == 3 * 3600
    assert metrics.handling_seconds == 6 * 3600 - 3 * 3600
    assert (metrics.satisfaction, metrics.resolved_by, metrics.reopen_count) == (5, "desk2", 0)
    assert (metrics.category, metrics.priority, metrics.outcome) == ("technical_service", "high", "closed")
    assert metrics.closed_at is not None


def test_given_a_ticket_in_progress_when_read_then_its_open_figures_are_empty(
    funnel: Funnel, clock: FakeClock
) -> None:
    view = ticket_at(funnel, "Triage and routing")
    metrics = ticket_metrics(funnel.engine, view.id)
    assert (metrics.first_response_at, metrics.closed_at, metrics.handling_seconds) == (None, None, None)
    assert (metrics.category, metrics.waiting_seconds, metrics.resolved_by) == ("technical_service", 0, None)


def test_given_tickets_of_two_resolvers_when_listed_then_each_resolver_sees_theirs(funnel: Funnel) -> None:
    ids = []
    for resolver in ("desk2", "desk3", "desk2"):
        view = ticket_at(funnel, "Resolution")
        view = funnel.advance(view.id, RESOLUTION, actor=resolver)
        ids.append(funnel.advance(view.id, ACCEPT, actor="desk1").id)
    open_one = ticket_at(funnel, "Resolution").id
    assert [m.instance_id for m in ticket_metrics_for(funnel.engine, resolved_by="desk2")] == [ids[0], ids[2]]
    assert open_one not in [m.instance_id for m in ticket_metrics_for(funnel.engine, closed_only=True)]
    assert len(ticket_metrics_for(funnel.engine)) == 4


def test_given_a_sales_opportunity_when_asked_for_ticket_metrics_then_not_found(funnel: Funnel) -> None:
    view = start_opportunity(funnel)
    with pytest.raises(NotFound, match="not a service request"):
        ticket_metrics(funnel.engine, view.id)
    with pytest.raises(InvalidInput):
        ticket_metrics(funnel.engine, "1")  # type: ignore[arg-type]

"""The four-stage project funding track end to end on the real engine and database (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import Conflict, TransitionRefused
from engine.instances import Funnel
from tests.customer_factories import FUNDING_STAGE_DATA, FUNDING_STAGES, db_snapshot, fund_to, start_project

PHASE_FUNDING = {"phase_funding_amount": 45600, "phase_funding_date": "2027-06-01"}


def refused_names(funnel: Funnel, instance_id: int, data: dict[str, Any]) -> list[str]:
    """Advance with `data`, expecting a refusal that writes nothing; return the unmet criteria's names."""
    before = db_snapshot(funnel)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(instance_id, data, actor="fin1")
    assert db_snapshot(funnel) == before
    return [u.criterion for u in refused.value.unmet]


def test_given_a_new_project_when_started_then_it_waits_for_the_first_funding_in_finance(funnel: Funnel) -> None:
    view = start_project(funnel, contract_number="C-2027-7", signed_amount=114000)
    assert (view.workflow, view.stage, view.stage_order, view.status) == ("project_funding", "First funding", 1,
                                                                          "running")
    assert view.amount == 114000 and view.probability is None
    [task] = view.open_tasks
    assert (task.name, task.lane, task.role) == ("First funding", "Finance", "finance")


def test_given_every_stage_satisfied_when_advanced_then_the_project_closes_with_amounts_and_dates(
    funnel: Funnel,
) -> None:
    # given
    view = start_project(funnel, signed_amount=114000)
    # when each stage is satisfied in turn
    for order, data in enumerate(FUNDING_STAGE_DATA, start=1):
        assert view.stage == FUNDING_STAGES[order - 1]
        view = funnel.advance(view.id, data, actor="fin1")
    # then the track is closed, and everything recorded is in its data and history
    assert (view.status, view.stage, view.open_tasks) == ("closed", "Final payment", [])
    for data in FUNDING_STAGE_DATA:
        assert data.items() <= view.data.items()
    kinds = [(e.kind, e.from_stage, e.to_stage) for e in funnel.history(view.id)]
    assert kinds == [("created", None, "First funding")] + [
        ("advanced", FUNDING_STAGES[i], FUNDING_STAGES[i + 1]) for i in range(3)
    ] + [("advanced", "Final payment", "closed")]
    assert funnel.history(view.id)[1].changes["first_funding_amount"] == {"from": None, "to": 34200}
    # and a closed project has nothing left to move
    with pytest.raises(Conflict, match="is closed"):
        funnel.advance(view.id, FUNDING_STAGE_DATA[3], actor="fin1")


def test_given_the_project_manager_stages_then_they_are_in_the_project_manager_lane(funnel: Funnel) -> None:
    view = fund_to(funnel, start_project(funnel).id, 2)
    assert [(t.lane, t.role) for t in view.open_tasks] == [("Project manager", "project_manager")]
    view = fund_to(funnel, view.id, 4)
    assert [(t.lane, t.role) for t in view.open_tasks] == [("Finance", "finance")]


@pytest.mark.parametrize(("data", "unmet"), [
    ({}, ["first_funding_amount_positive", "first_funding_date"]),
    ({"first_funding_amount": 0, "first_funding_date": "2027-03-01"}, ["first_funding_amount_positive"]),
    ({"first_funding_amount": -5, "first_funding_date": "2027-03-01"}, ["first_funding_amount_positive"]),
    ({"first_funding_amount": "lots", "first_funding_date": "2027-03-01"}, ["first_funding_amount_positive"]),
    ({"first_funding_amount": 34200, "first_funding_date": " "}, ["first_funding_date"]),
])
def test_given_the_first_funding_stage_when_amount_or_date_is_missing_then_refused(
    funnel: Funnel, data: dict[str, Any], unmet: list[str]
) -> None:
    assert refused_names(funnel, start_project(funnel).id, data) == unmet


@pytest.mark.parametrize("alternative", [{"integration_test_passed": True}, PHASE_FUNDING],
                         ids=["integration_test", "phase_funding"])
def test_given_either_alternative_when_leaving_stage_two_then_it_suffices(
    funnel: Funnel, alternative: dict[str, Any]
) -> None:
    view = fund_to(funnel, start_project(funnel).id, 2)
    after = funnel.advance(view.id, alternative, actor="pm1")
    assert after.stage == "Quality acceptance and final invoice"
    assert alternative.items() <= after.data.items()


@pytest.mark.parametrize("data", [
    {},
    {"integration_test_passed": False},
    {"phase_funding_amount": 45600},
    {"phase_funding_amount": 0, "phase_funding_date": "2027-06-01"},
    {"integration_test_passed": False, "phase_funding_date": "2027-06-01"},
])
def test_given_neither_alternative_when_leaving_stage_two_then_refused_listing_both(
    funnel: Funnel, data: dict[str, Any]
) -> None:
    view = fund_to(funnel, start_project(funnel).id, 2)
    before = db_snapshot(funnel)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, data, actor="pm1")
    [unmet] = refused.value.unmet
    assert unmet.criterion == "integration_or_phase_funding"
    assert [a.criterion for a in unmet.alternatives] == ["integration_test_passed", "phase_funding_received"]
    assert "phase_funding_date" in unmet.alternatives[1].message
    assert db_snapshot(funnel) == before


@pytest.mark.parametrize(("data", "unmet"), [
    ({}, ["quality_acceptance_passed", "final_invoice_issued"]),
    ({"quality_acceptance_passed": True}, ["final_invoice_issued"]),
    ({"final_invoice_number": "INV-1", "final_invoice_date": "2027-09-01"}, ["quality_acceptance_passed"]),
    ({"quality_acceptance_passed": True, "final_invoice_number": "INV-1"}, ["final_invoice_issued"]),
    ({"quality_acceptance_passed": False, "final_invoice_number": "INV-1", "final_invoice_date": "2027-09-01"},
     ["quality_acceptance_passed"]),
])
def test_given_stage_three_when_either_half_is_missing_then_refused_naming_each_missing_half(
    funnel: Funnel, data: dict[str, Any], unmet: list[str]
) -> None:
    view = fund_to(funnel, start_project(funnel).id, 3)
    assert refused_names(funnel, view.id, data) == unmet


def test_given_half_of_stage_three_recorded_when_the_other_half_follows_then_it_passes(funnel: Funnel) -> None:
    view = fund_to(funnel, start_project(funnel).id, 3)
    refused_names(funnel, view.id, {"quality_acceptance_passed": True})  # refused: nothing kept
    after = funnel.advance(view.id, FUNDING_STAGE_DATA[2], actor="pm1")
    assert after.stage == "Final payment"


@pytest.mark.parametrize(("data", "unmet"), [
    ({}, ["final_payment_amount_positive", "final_payment_date"]),
    ({"final_payment_amount": 22800}, ["final_payment_date"]),
    ({"final_payment_date": "2027-10-15"}, ["final_payment_amount_positive"]),
])
def test_given_the_final_payment_stage_when_amount_or_date_is_missing_then_the_project_stays_open(
    funnel: Funnel, data: dict[str, Any], unmet: list[str]
) -> None:
    view = fund_to(funnel, start_project(funnel).id, 4)
    assert refused_names(funnel, view.id, data) == unmet
    assert funnel.get(view.id).status == "running"


def test_given_a_later_stage_when_moved_back_with_a_reason_then_it_is_audited(funnel: Funnel) -> None:
    view = fund_to(funnel, start_project(funnel).id, 3)
    moved = funnel.move(view.id, "Integration test or phase funding", actor="pm1", reason="integration test voided")
    assert moved.stage_order == 2
    assert funnel.history(view.id)[-1].reason == "integration test voided"
    with pytest.raises(TransitionRefused, match="does not allow skipping"):
        funnel.move(start_project(funnel).id, "Final payment", actor="pm1", reason="paid early")

"""Routing slips end to end: parallel department answers, chasing, closing by itself or early with a reason."""

from __future__ import annotations

from typing import Any

import pytest

from engine.errors import Conflict, InvalidInput, TransitionRefused
from engine.instances import Funnel
from engine.spiff import Workflow
from tests.service_factories import (
    ITEM,
    answer,
    department_task,
    fire_chase,
    instance_row,
    snapshot,
    start_slip,
    task_rows,
    task_states,
    ticket_at,
)

DEPARTMENTS = ["Sales", "Quality", "Production"]


def criteria_of(funnel: Funnel, stage: str) -> dict[str, str]:
    meta = funnel.definitions.latest("routing_slip").meta
    found = meta.stage_named(stage)
    assert found is not None
    return {c.name: c.message for c in found.criteria}


# ---------------------------------------------------------------- closing by itself


def test_given_a_written_slip_then_each_department_has_its_own_open_task(funnel: Funnel) -> None:
    # when
    view = start_slip(funnel, DEPARTMENTS)
    # then
    assert (view.stage, view.stage_order, view.status) == ("Department handling", 2, "running")
    assert [(t.name, t.stage, t.role, t.lane) for t in view.open_tasks] == [
        (f"Acknowledge and handle: {d}", "Department handling", "department", "Department") for d in DEPARTMENTS
    ]
    assert view.data["handlings"] == {}
    assert "department" not in view.data  # each task's own item stays in that task
    assert task_states(funnel, view.id, "chase_timer") == ["WAITING"]


def test_given_every_department_answers_then_the_slip_closes_by_itself(funnel: Funnel) -> None:
    # given
    view = start_slip(funnel, DEPARTMENTS)
    # when the departments answer in any order
    for done, department in enumerate(["Quality", "Sales"], start=1):
        view = answer(funnel, view.id, department, note=f"{department} handled it")
        # then the slip stays open for the others, and the answer is filed under the department
        assert (view.stage, view.status) == ("Department handling", "running")
        assert len(view.open_tasks) == len(DEPARTMENTS) - done
        assert view.data["handlings"][department] == f"{department} handled it"
    view = answer(funnel, view.id, "Production", actor="plant-manager")
    # then
    assert view.status == "closed" and view.open_tasks == []
    assert view.data["handlings"] == {"Quality": "Quality handled it", "Sales": "Sales handled it",
                                      "Production": "Production: noted and acted on"}
    history = funnel.history(view.id)
    assert [(e.kind, e.actor, e.to_stage) for e in history][-3:] == [
        ("advanced", "head-quality", "Department handling"), ("advanced", "head-sales", "Department handling"),
        ("advanced", "plant-manager", "closed"),
    ]
    assert history[-1].changes["handlings"]["to"]["Production"] == "Production: noted and acted on"
    handled = [(t.name, t.status, t.completed_by) for t in task_rows(funnel, view.id)][1:]
    assert sorted(handled) == [
        ("Acknowledge and handle: Production", "completed", "plant-manager"),
        ("Acknowledge and handle: Quality", "completed", "head-quality"),
        ("Acknowledge and handle: Sales", "completed", "head-sales"),
    ]
    assert task_states(funnel, view.id, "chase_timer") == ["CANCELLED"]


def test_given_a_chased_slip_when_a_department_answers_late_then_it_is_accepted(funnel: Funnel) -> None:
    # given a slip whose chase timer has fired while two departments had not answered
    view = start_slip(funnel, DEPARTMENTS)
    answer(funnel, view.id, "Sales")
    fire_chase(funnel, view.id)
    assert task_states(funnel, view.id, "chase_timer") == ["COMPLETED"]
    assert task_states(funnel, view.id, "chase_due") == ["COMPLETED"]
    # when they answer after the chase
    view = answer(funnel, view.id, "Quality")
    assert view.status == "running" and len(view.open_tasks) == 1
    view = answer(funnel, view.id, "Production")
    # then the slip closes as usual
    assert view.status == "closed"
    assert sorted(view.data["handlings"]) == sorted(DEPARTMENTS)


def test_given_a_slip_for_twenty_departments_when_all_answer_then_it_closes(funnel: Funnel) -> None:
    departments = [f"Department {n:02d}" for n in range(1, 21)]
    view = start_slip(funnel, departments)
    assert len(view.open_tasks) == 20
    for department in reversed(departments):
        view = answer(funnel, view.id, department)
    assert view.status == "closed"
    assert sorted(view.data["handlings"]) == departments
    row = instance_row(funnel, view.id)
    assert Workflow.restore(funnel.definitions.get(row.definition_version_id).specs, row.state).completed


def test_given_several_open_departments_when_advancing_without_a_task_then_asked_which(funnel: Funnel) -> None:
    view = start_slip(funnel, DEPARTMENTS)
    before = snapshot(funnel, view.id)
    with pytest.raises(InvalidInput, match="several tasks are open; say which with task_id") as err:
        funnel.advance(view.id, {"acknowledged": True, "handling_note": "x"}, actor="someone")
    assert err.value.field == "task_id"
    assert f"{department_task(view, 'Quality')} (Acknowledge and handle: Quality)" in err.value.message
    assert snapshot(funnel, view.id) == before


# ---------------------------------------------------------------- criteria


@pytest.mark.parametrize(
    ("changes", "criterion"),
    [
        ({"title": ""}, "title_given"),
        ({"content": None}, "content_given"),
        ({"source": "  "}, "source_given"),
        ({"departments": []}, "departments_listed"),
        ({"departments": "Sales"}, "departments_listed"),
        ({"departments": None}, "departments_listed"),
        ({"departments": {"Sales": 1}}, "departments_listed"),
        ({"departments": ["Sales", " "]}, "departments_named"),
        ({"departments": ["Sales", 7]}, "departments_named"),
        ({"departments": ["Sales", "Quality", "sales "]}, "departments_distinct"),
        ({"departments": [f"D{n}" for n in range(101)]}, "departments_bounded"),
    ],
)
def test_given_a_bad_item_when_sent_then_refused_with_its_message_and_nothing_written(
    funnel: Funnel, changes: dict[str, Any], criterion: str
) -> None:
    view = funnel.start("routing_slip", {}, actor="author1")
    before = snapshot(funnel, view.id)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, {**ITEM, "departments": DEPARTMENTS, **changes}, actor="author1")
    [unmet] = refused.value.unmet
    assert unmet.criterion == criterion
    assert unmet.message == criteria_of(funnel, "Write the item")[criterion]
    assert snapshot(funnel, view.id) == before


@pytest.mark.parametrize(
    ("data", "criteria"),
    [
        ({"acknowledged": False, "handling_note": "n"}, ["acknowledged"]),
        ({"acknowledged": True, "handling_note": " "}, ["handling_recorded"]),
        ({}, ["acknowledged", "handling_recorded"]),
    ],
)
def test_given_an_incomplete_answer_when_a_department_advances_then_refused_and_nothing_written(
    funnel: Funnel, data: dict[str, Any], criteria: list[str]
) -> None:
    view = start_slip(funnel, DEPARTMENTS)
    before = snapshot(funnel, view.id)
    with pytest.raises(TransitionRefused, match="cannot leave stage 'Department handling'") as refused:
        funnel.advance(view.id, data, actor="head-sales", task_id=department_task(view, "Sales"))
    assert [u.criterion for u in refused.value.unmet] == criteria
    assert snapshot(funnel, view.id) == before


# ---------------------------------------------------------------- closing early


def test_given_departments_not_answered_when_the_owner_closes_early_then_they_are_listed_and_cancelled(
    funnel: Funnel,
) -> None:
    # given one of three departments has answered
    view = start_slip(funnel, DEPARTMENTS)
    answer(funnel, view.id, "Quality")
    # when
    closed = funnel.close_early(view.id, actor="author1", reason="  The price cut was withdrawn ")
    # then
    assert (closed.status, closed.open_tasks, closed.stage) == ("closed_early", [], "Department handling")
    assert closed.data["unanswered"] == ["Sales", "Production"]
    assert closed.data["handlings"] == {"Quality": "Quality: noted and acted on"}
    last = funnel.history(view.id)[-1]
    assert (last.kind, last.actor, last.reason) == ("closed_early", "author1", "The price cut was withdrawn")
    assert (last.from_stage, last.to_stage) == ("Department handling", "closed_early")
    assert last.changes == {"unanswered": {"from": None, "to": ["Sales", "Production"]}}
    statuses = {t.name: (t.status, t.completed_by) for t in task_rows(funnel, view.id)}
    assert statuses["Acknowledge and handle: Sales"] == ("cancelled", None)
    assert statuses["Acknowledge and handle: Production"] == ("cancelled", None)
    assert statuses["Acknowledge and handle: Quality"] == ("completed", "head-quality")
    # and the stored workflow is finished: nothing can be answered any more
    with pytest.raises(Conflict, match="is closed_early"):
        funnel.advance(view.id, {}, actor="head-sales")
    assert task_states(funnel, view.id, "chase_timer") == ["CANCELLED"]


def test_given_a_slip_still_being_written_when_closed_early_then_the_open_stage_is_listed(funnel: Funnel) -> None:
    view = funnel.start("routing_slip", {"title": "draft"}, actor="author1")
    closed = funnel.close_early(view.id, actor="author1", reason="Duplicate of an earlier slip",
                                expected_version=1)
    assert closed.status == "closed_early" and closed.data["unanswered"] == ["Write the item"]
    assert closed.data["title"] == "draft"


@pytest.mark.parametrize("reason", [None, "", "   ", 12])
def test_given_no_reason_when_closing_early_then_invalid_input_and_nothing_written(
    funnel: Funnel, reason: Any
) -> None:
    view = start_slip(funnel, DEPARTMENTS)
    before = snapshot(funnel, view.id)
    with pytest.raises(InvalidInput) as err:
        funnel.close_early(view.id, actor="author1", reason=reason)
    assert err.value.field == "reason"
    assert snapshot(funnel, view.id) == before


def test_given_a_workflow_without_early_close_when_closing_early_then_refused_naming_the_policy(
    funnel: Funnel,
) -> None:
    view = ticket_at(funnel, "Resolution")
    before = snapshot(funnel, view.id)
    with pytest.raises(TransitionRefused, match=r'Service request cannot be closed early.*close="with-reason"'):
        funnel.close_early(view.id, actor="desk1", reason="no longer needed")
    assert snapshot(funnel, view.id) == before


def test_given_a_finished_or_changed_slip_when_closing_early_then_conflict_and_nothing_written(
    funnel: Funnel,
) -> None:
    view = start_slip(funnel, ["Sales"])
    with pytest.raises(Conflict, match=f"is at version {view.row_version}, not 1"):
        funnel.close_early(view.id, actor="author1", reason="why", expected_version=1)
    done = answer(funnel, view.id, "Sales")
    before = snapshot(funnel, done.id)
    with pytest.raises(Conflict, match="is closed; there is nothing to close"):
        funnel.close_early(done.id, actor="author1", reason="why")
    assert snapshot(funnel, done.id) == before

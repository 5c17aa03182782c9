"""The sales funnel end to end on the real engine and database (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from engine.errors import Conflict, InvalidInput, NotFound, TransitionRefused
from engine.instances import Funnel
from engine.models import AuditEvent, HumanTask, Instance
from engine.spiff import Workflow
from tests.factories import FUNNEL_STAGE_DATA, LOST, STAGES, WON, advance_to, start_opportunity


def snapshot(funnel: Funnel, instance_id: int) -> dict[str, Any]:
    """Everything stored about an instance, to prove a refusal wrote nothing."""
    with Session(funnel.engine) as session:
        row = session.get(Instance, instance_id)
        assert row is not None
        events = session.exec(select(AuditEvent).where(AuditEvent.instance_id == instance_id)).all()
        tasks = session.exec(select(HumanTask).where(HumanTask.instance_id == instance_id)).all()
        return {"row": row.model_dump(), "events": len(events), "tasks": [t.model_dump() for t in tasks]}


def criteria_of(funnel: Funnel, stage_order: int) -> dict[str, str]:
    meta = funnel.definitions.latest("sales_funnel").meta
    stage = next(s for s in meta.stages if s.order == stage_order)
    return {c.name: c.message for c in stage.criteria}


# ---------------------------------------------------------------- happy paths


def test_given_a_new_opportunity_when_started_then_it_is_in_stage_one_with_history(funnel: Funnel) -> None:
    # when
    view = start_opportunity(funnel, **FUNNEL_STAGE_DATA[0])
    # then
    assert (view.stage, view.stage_order, view.status) == ("Identify opportunity", 1, "running")
    assert view.probability == pytest.approx(0.10)
    assert view.amount == 120000
    assert view.row_version == 1
    assert [t.name for t in view.open_tasks] == ["Identify opportunity"]
    assert view.open_tasks[0].role == "rep" and view.open_tasks[0].lane == "Sales rep"
    [created] = funnel.history(view.id)
    assert (created.kind, created.actor, created.to_stage) == ("created", "rep1", "Identify opportunity")
    assert created.changes["estimated_amount"] == {"from": None, "to": 120000}


@pytest.mark.parametrize("outcome", ["won", "lost"])
def test_given_each_stage_satisfied_when_advanced_to_the_end_then_outcome_and_round_trips_hold(
    funnel: Funnel, outcome: str
) -> None:
    # given
    view = start_opportunity(funnel)
    definition = funnel.definitions.latest("sales_funnel")
    for order, data in enumerate(FUNNEL_STAGE_DATA, start=1):
        # when
        view = funnel.advance(view.id, data, actor="rep1")
        # then: the stored state restores to the same state and the same open stage
        with Session(funnel.engine) as session:
            row = session.get(Instance, view.id)
            assert row is not None
        restored = Workflow.restore(definition.specs, row.state)
        assert restored.state() == row.state
        assert [t.task_spec.bpmn_name for t in restored.ready_human_tasks()] == [STAGES[order]]
        assert view.stage_order == order + 1 and view.row_version == order + 1
    final = funnel.advance(view.id, WON if outcome == "won" else LOST, actor="rep1")
    assert final.status == outcome
    assert final.open_tasks == []
    assert final.probability == (1.0 if outcome == "won" else 0.0)
    assert final.amount == (114000 if outcome == "won" else 115000)
    kinds = [(e.kind, e.from_stage, e.to_stage) for e in funnel.history(view.id)]
    assert kinds[0] == ("created", None, "Identify opportunity")
    assert kinds[1:] == [("advanced", STAGES[i], STAGES[i + 1]) for i in range(4)] + [
        ("advanced", "Sales outcome", outcome)
    ]


def test_given_a_finished_opportunity_when_advanced_again_then_conflict_and_nothing_written(
    funnel: Funnel,
) -> None:
    view = advance_to(funnel, start_opportunity(funnel).id, 5)
    funnel.advance(view.id, WON, actor="rep1")
    before = snapshot(funnel, view.id)
    with pytest.raises(Conflict, match="is won"):
        funnel.advance(view.id, WON, actor="rep1")
    assert snapshot(funnel, view.id) == before


# ---------------------------------------------------------------- criteria


@pytest.mark.parametrize(
    ("order", "field", "bad"),
    [
        (1, "contact_name", None),
        (1, "need", "   "),
        (1, "estimated_amount", 0),
        (2, "budget_confirmed", False),
        (2, "decision_maker", ""),
        (2, "expected_close_date", None),
        (3, "project_started", None),
        (3, "requirements_documented", False),
        (3, "competitors", None),
        (4, "proposal_submitted", None),
        (4, "solution_review_passed", False),
        (4, "final_amount", -5),
    ],
)
def test_given_one_unmet_criterion_when_advancing_then_refused_with_its_message_and_nothing_written(
    funnel: Funnel, order: int, field: str, bad: Any
) -> None:
    # given an opportunity in stage `order` whose submission breaks exactly one criterion
    view = advance_to(funnel, start_opportunity(funnel).id, order)
    data = {**FUNNEL_STAGE_DATA[order - 1], field: bad}
    before = snapshot(funnel, view.id)
    # when
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, data, actor="rep1")
    # then
    [unmet] = refused.value.unmet
    messages = criteria_of(funnel, order)
    assert unmet.message == messages[unmet.criterion]
    assert field in unmet.message
    assert snapshot(funnel, view.id) == before


def test_given_an_empty_submission_when_advancing_then_every_unmet_criterion_is_listed(funnel: Funnel) -> None:
    view = start_opportunity(funnel)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, {}, actor="rep1")
    names = [u.criterion for u in refused.value.unmet]
    assert names == ["customer_known", "contact_known", "need_described", "estimated_amount_positive"]
    assert "4 criterion(s) not met" in refused.value.message
    assert refused.value.to_dict()["unmet"][0]["message"].startswith(criteria_of(funnel, 1)["customer_known"])


def test_given_a_wrong_type_when_advancing_then_the_criterion_is_unmet_with_a_detail(funnel: Funnel) -> None:
    view = start_opportunity(funnel)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, {**FUNNEL_STAGE_DATA[0], "estimated_amount": "lots"}, actor="rep1")
    [unmet] = refused.value.unmet
    assert unmet.criterion == "estimated_amount_positive"
    assert unmet.detail and "TypeError" in unmet.detail


def test_given_data_from_earlier_stages_when_advancing_then_it_counts(funnel: Funnel) -> None:
    # given stage 1 data submitted at the start
    view = start_opportunity(funnel, **FUNNEL_STAGE_DATA[0])
    # when advancing with nothing new
    view = funnel.advance(view.id, {}, actor="rep1")
    # then the stored data satisfied stage 1
    assert view.stage == "Qualification"


@pytest.mark.parametrize(("tier", "approval", "ok"), [("D", None, False), ("D", "ok by M", True), ("A", None, True)])
def test_given_a_d_tier_customer_when_qualifying_then_manager_approval_is_required(
    funnel: Funnel, tier: str, approval: str | None, ok: bool
) -> None:
    view = funnel.advance(start_opportunity(funnel, tier=tier).id, FUNNEL_STAGE_DATA[0], actor="rep1")
    data = {**FUNNEL_STAGE_DATA[1], **({"manager_approval": approval} if approval else {})}
    if ok:
        assert funnel.advance(view.id, data, actor="rep1").stage == "Development"
        return
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, data, actor="rep1")
    assert [u.criterion for u in refused.value.unmet] == ["manager_approval"]


@pytest.mark.parametrize(
    ("data", "unmet"),
    [
        ({}, ["outcome_chosen"]),
        ({"outcome": "maybe"}, ["outcome_chosen"]),
        ({"outcome": "won"}, ["contract_number", "signed_amount_positive"]),
        ({"outcome": "won", "contract_number": "C-1", "signed_amount": 0}, ["signed_amount_positive"]),
        ({"outcome": "lost"}, ["loss_reason"]),
    ],
)
def test_given_the_outcome_stage_when_closing_without_its_data_then_refused(
    funnel: Funnel, data: dict[str, Any], unmet: list[str]
) -> None:
    view = advance_to(funnel, start_opportunity(funnel).id, 5)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, data, actor="rep1")
    assert [u.criterion for u in refused.value.unmet] == unmet


# ---------------------------------------------------------------- moves


def test_given_a_later_stage_when_moved_back_with_a_reason_then_it_is_audited(funnel: Funnel) -> None:
    view = advance_to(funnel, start_opportunity(funnel).id, 4)
    moved = funnel.move(view.id, "Qualification", actor="mgr", reason="budget withdrawn")
    assert (moved.stage, moved.stage_order, moved.status) == ("Qualification", 2, "running")
    assert [t.name for t in moved.open_tasks] == ["Qualification"]
    last = funnel.history(view.id)[-1]
    assert (last.kind, last.from_stage, last.to_stage, last.reason, last.actor) == (
        "moved_back", "Proposal", "Qualification", "budget withdrawn", "mgr"
    )
    # and the funnel goes on from there
    assert funnel.advance(view.id, FUNNEL_STAGE_DATA[1], actor="rep1").stage == "Development"


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_given_no_reason_when_moving_back_then_refused_and_nothing_written(
    funnel: Funnel, reason: str | None
) -> None:
    view = advance_to(funnel, start_opportunity(funnel).id, 3)
    before = snapshot(funnel, view.id)
    with pytest.raises(InvalidInput, match="needs a reason"):
        funnel.move(view.id, "Identify opportunity", actor="mgr", reason=reason)
    assert snapshot(funnel, view.id) == before


@pytest.mark.parametrize(("target", "error"), [
    ("Proposal", "does not allow skipping"),
    ("Development", "is the next stage"),
    ("Qualification", "already in stage"),
    ("Negotiation", "is not a stage"),
])
def test_given_the_funnel_policy_when_skipping_then_refused(funnel: Funnel, target: str, error: str) -> None:
    view = advance_to(funnel, start_opportunity(funnel).id, 2)
    before = snapshot(funnel, view.id)
    with pytest.raises((TransitionRefused, InvalidInput), match=error):
        funnel.move(view.id, target, actor="mgr", reason="because")
    assert snapshot(funnel, view.id) == before


# ---------------------------------------------------------------- bad input and concurrency


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (["not", "an", "object"], "data"),
        ({"1st": 1}, "1st"),
        ({"_private": 1}, "_private"),
        ({"customer_tier": "A"}, "customer_tier"),
        ({"filled": 1}, "filled"),
        ({"x": float("nan")}, "x"),
        ({"x": {"y": object()}}, "x.y"),
        ({"x": "a" * 300_000}, "data"),
        ({"x": "a\x00b"}, "x"),  # PostgreSQL refuses NUL
        ({"n": 10**400}, "n"),  # beyond what databases and float() hold
        ({"l": [2**64]}, "l[0]"),
    ],
)
def test_given_malformed_data_when_advancing_then_invalid_input_names_the_field(
    funnel: Funnel, data: Any, field: str
) -> None:
    view = start_opportunity(funnel)
    before = snapshot(funnel, view.id)
    with pytest.raises(InvalidInput) as err:
        funnel.advance(view.id, data, actor="rep1")
    assert err.value.field == field
    assert snapshot(funnel, view.id) == before


def test_given_unknown_ids_when_called_then_not_found(funnel: Funnel) -> None:
    with pytest.raises(NotFound, match="instance 999 does not exist"):
        funnel.advance(999, {}, actor="rep1")
    with pytest.raises(NotFound, match="no workflow named 'nope'"):
        funnel.start("nope", {}, actor="rep1")
    view = start_opportunity(funnel)
    with pytest.raises(NotFound, match="is not open"):
        funnel.advance(view.id, {}, actor="rep1", task_id="00000000-0000-0000-0000-000000000000")


def test_given_a_stale_expected_version_when_advancing_then_conflict_names_the_current_version(
    funnel: Funnel,
) -> None:
    view = funnel.advance(start_opportunity(funnel).id, FUNNEL_STAGE_DATA[0], actor="rep1")
    with pytest.raises(Conflict) as err:
        funnel.advance(view.id, FUNNEL_STAGE_DATA[1], actor="rep1", expected_version=1)
    assert err.value.current_version == 2
    assert "version 2" in err.value.message


def test_given_the_audit_log_when_someone_tries_to_rewrite_it_then_the_database_refuses(funnel: Funnel) -> None:
    view = start_opportunity(funnel)
    for statement in ("UPDATE audit_event SET actor = 'mallory'", "DELETE FROM audit_event"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), funnel.engine.begin() as conn:
            conn.execute(sa.text(statement))
    assert [e.actor for e in funnel.history(view.id)] == ["rep1"]


# ---------------------------------------------------------------- guards (the API's permission check)


def test_given_a_guard_when_advancing_then_it_sees_the_row_and_open_tasks_the_change_is_written_over(
        funnel: Funnel) -> None:
    # given an opportunity with one open task
    view = start_opportunity(funnel)
    [task] = view.open_tasks
    seen: list[tuple[int, int, tuple[Any, ...]]] = []

    def guard(row: Instance, tasks: tuple[Any, ...]) -> None:
        seen.append((row.id or 0, row.row_version, tasks))

    # when it is advanced with a guard
    after = funnel.advance(view.id, FUNNEL_STAGE_DATA[0], actor="rep1", guard=guard)
    # then the guard saw the instance at the version the change replaced, and who holds its open task
    assert seen == [(view.id, view.row_version, ((task.id, task.assignee, None),))]  # no team: no roster here
    assert after.row_version == view.row_version + 1


@pytest.mark.parametrize("change", ["advance", "move", "set_waiting", "close_early"])
def test_given_a_guard_that_refuses_then_the_change_is_refused_and_nothing_is_written(
        funnel: Funnel, change: str) -> None:
    # given an opportunity
    view = start_opportunity(funnel)

    def refuse(row: Instance, tasks: tuple[Any, ...]) -> None:
        raise PermissionError(f"not yours: {row.id}")

    calls = {
        "advance": lambda: funnel.advance(view.id, FUNNEL_STAGE_DATA[0], actor="rep1", guard=refuse),
        "move": lambda: funnel.move(view.id, STAGES[2], actor="rep1", reason="skip", guard=refuse),
        "set_waiting": lambda: funnel.set_waiting(view.id, waiting=True, actor="rep1", reason="r", guard=refuse),
        "close_early": lambda: funnel.close_early(view.id, actor="rep1", reason="r", guard=refuse),
    }
    # when the change is asked for, then the guard's refusal comes out and the instance is as it was
    with pytest.raises(PermissionError, match=f"not yours: {view.id}"):
        calls[change]()
    assert funnel.get(view.id).row_version == view.row_version
    assert [e.kind for e in funnel.history(view.id)] == ["created"]

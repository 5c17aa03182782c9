"""Assignment end to end on the real engine and database: rules, strategies, explanations, overrides."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, select

from engine import people
from engine.assignment import explanations
from engine.bootstrap import open_funnel
from engine.errors import Conflict, InvalidInput, TransitionRefused, WorkflowFailed
from engine.instances import Funnel
from engine.models import Instance
from engine.overrides import reassign
from engine.spiff import SpiffError, evaluate_decision
from tests.conftest import WORKFLOWS, FakeClock, make_settings
from tests.factories import FUNNEL_STAGE_DATA, LOST
from tests.people_factories import (
    alerts,
    assigned_events,
    assigned_workflow,
    decision,
    open_tasks,
    opportunity,
    sales_roster,
    team,
    workflows_dir,
)

SHIPPED_DMN = {p.name: p.read_text() for p in WORKFLOWS.glob("*.dmn")}


@pytest.fixture
def roster(funnel: Funnel, clock: FakeClock) -> Funnel:
    """The shipped workflows plus the demo roster (ivan inactive, erin absent for two weeks)."""
    sales_roster(funnel.engine, now=clock.now)
    return funnel


@pytest.fixture
def custom(db_url: str, clock: FakeClock, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Funnel]:
    """A funnel on a folder holding the (bpmn, {dmn files}) given as the indirect parameter."""
    bpmn, dmn = request.param
    f = open_funnel(make_settings(db_url, workflows_dir(tmp_path, bpmn, dmn)), clock=clock)
    yield f
    f.engine.dispose()


def explanation(funnel: Funnel, instance_id: int, index: int = -1) -> dict[str, Any]:
    return assigned_events(funnel, instance_id)[index].changes["explanation"]


# ---------------------------------------------------------------- the shipped rules, row by row


@pytest.mark.parametrize(("decision_id", "data", "row", "outputs", "also"), [
    ("assign_sales", {"customer_tier": "A", "account_owner": "kim"}, 1, {"team": "key_accounts", "person": "kim"}, []),
    ("assign_sales", {"customer_tier": "A", "amount": 250000, "region": "north"}, 2,
     {"team": "key_accounts", "strategy": "least_loaded"}, [4]),
    ("assign_sales", {"customer_tier": "A", "amount": 99999, "region": "north"}, 4, {"team": "sales_north"}, []),
    ("assign_sales", {"region": "north", "product_line": "cranes"}, 3, {"team": "sales_north", "skill": "cranes"},
     [4]),
    ("assign_sales", {"region": "east"}, 5, {"team": "sales_south", "strategy": "round_robin"}, []),
    ("assign_sales", {"customer_tier": "B"}, None, {}, []),
    ("assign_service", {"category": "complaint", "priority": "urgent", "customer_tier": "A"}, 1,
     {"skill": "senior", "strategy": "least_loaded"}, [5, 6]),
    ("assign_service", {"category": "quality_objection", "priority": "low"}, 2, {"skill": "quality"}, [6]),
    ("assign_service", {"category": "technical_service", "customer_tier": "A", "priority": "low"}, 3,
     {"skill": "technical"}, [6]),
    ("assign_service", {"category": "delivery"}, 4, {"skill": "logistics", "strategy": "round_robin"}, [6]),
    ("assign_service", {"category": "other"}, 6, {"team": "service_desk", "skill": ""}, []),
], ids=["named-owner", "a-tier-big", "a-tier-small", "cranes", "east", "no-region", "a-urgent", "quality",
        "technical", "delivery", "catch-all"])
def test_given_the_shipped_tables_when_evaluated_then_the_first_matching_row_decides(
        decision_id: str, data: dict[str, Any], row: int | None, outputs: dict[str, str], also: list[int]) -> None:
    # when
    result = evaluate_decision(SHIPPED_DMN, decision_id, data)
    # then: COLLECT collects every match, in table order; the first is the one that decides
    assert result.hit_policy == "COLLECT"
    rows = [m.row for m in result.matches]
    assert rows[:1] == ([row] if row else [])
    assert rows[1:] == also
    if row:
        assert {k: result.matches[0].outputs[k] for k in outputs} == outputs


def test_given_a_cell_that_cannot_be_evaluated_then_its_row_does_not_match_and_is_reported() -> None:
    result = evaluate_decision(SHIPPED_DMN, "assign_sales", {"customer_tier": "A", "amount": "lots", "region": "north"})
    assert [m.row for m in result.matches] == [4]
    [(row, reason)] = result.skipped
    assert row == 2 and "'>=' not supported between instances of 'str' and 'int'" in reason


@pytest.mark.parametrize(("sources", "decision_id", "message"), [
    (SHIPPED_DMN, "assign_nobody", "no DMN file of this definition version defines decision 'assign_nobody'"),
    ({"h.dmn": decision("h", [], [([], {"team": "().__class__"})])}, "h", "attribute `__class__` is not allowed"),
])
def test_given_a_missing_or_hostile_decision_then_the_adapter_refuses_it(
        sources: dict[str, Any], decision_id: str, message: str) -> None:
    with pytest.raises(SpiffError, match=re.escape(message)):
        evaluate_decision(sources, decision_id, {})


# ---------------------------------------------------------------- strategies end to end


def test_given_a_northern_opportunity_stream_then_round_robin_skips_the_inactive_and_explains(roster: Funnel) -> None:
    # when four opportunities arrive for the north (alice, bob, nora, ivan; ivan has left)
    owners = [opportunity(roster, region="north").assignee for _ in range(4)]
    # then
    assert owners == ["alice", "bob", "nora", "alice"]
    detail = explanation(roster, 2)
    assert detail["rule"]["row"] == 4 and detail["team"] == "sales_north" and detail["strategy"] == "round_robin"
    assert detail["candidates"] == [
        {"login": "bob", "outcome": "chosen", "reason": "next in rotation after alice"},
        {"login": "nora", "outcome": "passed", "reason": "not next in rotation"},
        {"login": "ivan", "outcome": "passed", "reason": "inactive"},
        {"login": "alice", "outcome": "passed", "reason": "not next in rotation"},
    ]


def test_given_an_absent_rep_then_she_is_passed_over_until_her_return(roster: Funnel, clock: FakeClock) -> None:
    # when (erin is on leave from a day ago for two weeks)
    owners = [opportunity(roster, region="south").assignee for _ in range(3)]
    clock.advance(days=15)
    owners += [opportunity(roster, region="south").assignee for _ in range(2)]
    # then
    assert owners == ["carol", "diego", "carol", "diego", "erin"]
    [erin] = [c for c in explanation(roster, 1)["candidates"] if c["login"] == "erin"]
    assert erin == {"login": "erin", "outcome": "passed", "reason": "absent until 2026-12-07 09:00 (Europe/Dublin)"}


def test_given_a_skill_in_the_rule_then_only_members_with_it_are_chosen(roster: Funnel) -> None:
    owners = [opportunity(roster, region="north", product_line="cranes").assignee for _ in range(3)]
    assert owners == ["alice", "nora", "alice"]
    reasons = {c["login"]: c["reason"] for c in explanation(roster, 2)["candidates"]}
    assert reasons["bob"] == "missing skill 'cranes'"


def test_given_least_loaded_then_the_member_with_fewest_open_tasks_wins_and_the_rest_are_explained(
        roster: Funnel) -> None:
    big = {"tier": "A", "region": None, "estimated_amount": 500000}
    # given one deal each for kai.key, kim and lars (ties go round the team in order)
    first = [opportunity(roster, **big) for _ in range(3)]
    assert [v.assignee for v in first] == ["kai.key", "kim", "lars"]
    # when kim's deal is lost (her task closes) and a new big deal arrives
    view = first[1]
    for data in FUNNEL_STAGE_DATA:
        view = roster.advance(view.id, data, actor="kim")
    roster.advance(view.id, LOST, actor="kim")
    nxt = opportunity(roster, **big)
    # then
    assert nxt.assignee == "kim"
    candidates = explanation(roster, nxt.id)["candidates"]
    assert candidates[0] == {"login": "kim", "outcome": "chosen", "reason": "fewest open tasks (0)"}
    assert {c["login"]: c["reason"] for c in candidates[1:]} == {
        "lars": "more open tasks (1)", "kai.key": "more open tasks (1)"}


def test_given_capacity_caps_then_full_members_are_skipped_and_a_full_team_queues(roster: Funnel) -> None:
    for login in ("kai.key", "kim", "lars"):
        people.update_user(roster.engine, login, capacity=1)
    big = {"tier": "A", "region": None, "estimated_amount": 500000}
    owners = [opportunity(roster, **big).assignee for _ in range(4)]
    assert owners == ["kai.key", "kim", "lars", None]
    last = assigned_events(roster, 4)[-1].changes["explanation"]
    assert {c["reason"] for c in last["candidates"]} == {"at capacity 1/1"}


def test_given_an_empty_pool_then_the_task_waits_in_the_team_queue_and_the_manager_is_alerted(
        roster: Funnel) -> None:
    # given nobody in the south can take work (erin is away, the others have left)
    for login in ("carol", "diego"):
        people.deactivate_user(roster.engine, login)
    # when
    view = opportunity(roster, region="south")
    # then
    [task] = open_tasks(roster.engine, view.id)
    assert (task.assignee, task.team, view.assignee) == (None, "sales_south", None)
    [alert] = alerts(roster.engine)
    assert (alert.team, alert.manager, alert.instance_id, alert.task_uuid) == (
        "sales_south", "sam.south", view.id, task.task_uuid)
    assert alert.delivered_at is None
    assert "carol: inactive" in alert.reason and "erin: absent until" in alert.reason
    assert explanation(roster, view.id)["basis"] == "queued"


def test_given_service_requests_then_the_desk_routes_them_by_the_skill_each_category_needs(roster: Funnel) -> None:
    categories = ("delivery", "delivery", "quality_objection", "technical_service")
    owners = [roster.start("service_request", {"category": c, "priority": "normal"}, actor="dana.desk",
                           customer_tier="B").assignee for c in categories]
    # logistics: tom, uma in rotation; quality: sue; technical, least loaded: vic (tom has one already)
    assert owners == ["tom", "uma", "sue", "vic"]


# ---------------------------------------------------------------- precedence, continuity, fallback


def test_given_no_matching_rule_then_the_creator_keeps_it_and_the_history_says_why(roster: Funnel) -> None:
    view = opportunity(roster, region=None, actor="bob")
    assert view.assignee == "bob" and view.open_tasks[0].assignee == "bob"
    [event] = assigned_events(roster, view.id)
    assert event.changes["explanation"]["basis"] == "no_rule" and event.changes["explanation"]["rule"] is None
    assert event.reason is not None and event.reason.startswith("No rule of assign_sales matched: bob keeps it")


def test_given_an_a_tier_deal_in_the_north_then_key_accounts_take_precedence_over_the_region(roster: Funnel) -> None:
    view = opportunity(roster, region="north", tier="A", estimated_amount=250000)
    detail = explanation(roster, view.id)
    assert (view.assignee, detail["team"], detail["rule"]["row"], detail["also_matched"]) == (
        "kai.key", "key_accounts", 2, [4])
    assert detail["rule"]["cells"] == {"Customer tier": '"A"', "Amount": ">= 100000"}
    assert detail["inputs"]["Amount"] == 250000


def test_given_a_named_account_owner_then_they_get_it_unless_away(roster: Funnel, clock: FakeClock) -> None:
    assert opportunity(roster, tier="A", account_owner="lars").assignee == "lars"
    people.add_absence(roster.engine, "lars", starts_at=clock.now, ends_at=clock.now.replace(year=2027))
    view = opportunity(roster, tier="A", account_owner="lars")
    detail = explanation(roster, view.id)
    assert view.assignee == "kai.key" and detail["basis"] == "strategy"
    assert detail["candidates"][1]["login"] == "lars" and "absent until 2027" in detail["candidates"][1]["reason"]


def test_given_an_owner_in_the_team_when_advanced_then_they_keep_the_opportunity(roster: Funnel) -> None:
    view = opportunity(roster, region="north")
    for data in FUNNEL_STAGE_DATA[:3]:
        view = roster.advance(view.id, {**data, "region": "north"}, actor="alice")
    assert view.assignee == "alice" and view.open_tasks[0].assignee == "alice"
    assert [e["basis"] for e in (x.detail for x in explanations(roster.engine, view.id))] == [
        "strategy", "owner", "owner", "owner"]


def test_given_an_assignment_then_history_and_explanations_carry_the_same_readable_reason(roster: Funnel) -> None:
    view = opportunity(roster, region="north")
    kinds = [(e.kind, e.actor) for e in roster.history(view.id)]
    assert kinds == [("created", "alice"), ("assigned", "system:assignment")]
    [item] = explanations(roster.engine, view.id)
    assert item.summary == (
        "Rule 4 of assign_sales (Region \"north\": Everything else in the north: northern sales team in rotation): "
        "alice gets it: first in rotation. Passed over: bob (not next in rotation), nora (not next in rotation), "
        "ivan (inactive).")
    assert (item.assignee, item.team, item.task, item.stage) == ("alice", "sales_north", "Identify opportunity",
                                                                 "Identify opportunity")


def test_given_no_roster_then_the_creator_keeps_the_work_as_before(funnel: Funnel) -> None:
    view = opportunity(funnel, region="north", actor="rep9")
    assert view.assignee == "rep9" and [e.kind for e in funnel.history(view.id)] == ["created"]


# ---------------------------------------------------------------- overrides


def test_given_a_manager_reassigns_then_it_is_audited_and_survives_later_rules(roster: Funnel) -> None:
    view = opportunity(roster, region="north")
    # when the northern manager gives it to carol (not in the northern team)
    moved = reassign(roster, view.id, to="carol", actor="mia.north", reason="speaks the customer's language")
    # then
    assert (moved.assignee, moved.open_tasks[0].assignee, moved.row_version) == ("carol", "carol", 2)
    event = roster.history(view.id)[-1]
    assert (event.kind, event.actor, event.reason) == ("reassigned", "mia.north", "speaks the customer's language")
    assert event.changes["assignee"] == {"from": "alice", "to": "carol"}
    # and the next stage keeps the manual choice though the rule names the northern team
    after = roster.advance(view.id, {**FUNNEL_STAGE_DATA[0], "region": "north"}, actor="carol")
    assert after.assignee == "carol" and explanation(roster, view.id)["basis"] == "manual"


@pytest.mark.parametrize(("actor", "to", "reason", "error", "message"), [
    ("alice", "bob", "x", TransitionRefused, "alice is not a manager"),
    ("sam.south", "bob", "x", TransitionRefused, "sam.south does not manage sales_north"),
    ("ghost", "bob", "x", TransitionRefused, "'ghost' is not an active user"),
    ("mia.north", "bob", "  ", InvalidInput, "needs a reason"),
    ("mia.north", "ivan", "x", InvalidInput, "ivan is inactive"),
    ("mia.north", "alice", "x", InvalidInput, "alice already has this work"),
])
def test_given_a_reassignment_that_is_not_allowed_then_refused_and_nothing_changes(
        roster: Funnel, actor: str, to: str, reason: str, error: type[Exception], message: str) -> None:
    view = opportunity(roster, region="north")
    with pytest.raises(error, match=message):
        reassign(roster, view.id, to=to, actor=actor, reason=reason)
    assert roster.get(view.id).assignee == "alice" and roster.get(view.id).row_version == 1


def test_given_an_admin_or_a_stale_version_then_reassignment_is_allowed_or_conflicts(roster: Funnel) -> None:
    view = opportunity(roster, region="north")
    with pytest.raises(Conflict, match="not 7"):
        reassign(roster, view.id, to="bob", actor="admin", reason="balance", expected_version=7)
    assert reassign(roster, view.id, to="bob", actor="admin", reason="balance", expected_version=1).assignee == "bob"


def test_given_a_queued_task_when_the_manager_assigns_it_then_it_leaves_the_queue(roster: Funnel) -> None:
    for login in ("carol", "diego"):
        people.deactivate_user(roster.engine, login)
    view = opportunity(roster, region="south")
    people.update_user(roster.engine, "diego", active=True)
    assert reassign(roster, view.id, to="diego", actor="sam.south", reason="back from leave").assignee == "diego"
    with Session(roster.engine) as session:
        row = session.get(Instance, view.id)
        assert row is not None and row.assignee == "diego"


# ---------------------------------------------------------------- custom rules: keep_owner, returning, refusals

TWO_TEAMS = decision("assign_routed", ["kind"], [
    (['"plain"'], {"team": '"team_a"'}),
    (['"reroute"'], {"team": '"team_a"', "keep_owner": "False"}),
])
STAGE_TWO = decision("assign_b", [], [([], {"team": '"team_b"'})])
AMBIGUOUS = decision("assign_routed", ["kind"], [([""], {"team": '"team_a"'}), (['"plain"'], {"team": '"team_b"'})],
                     policy="UNIQUE")
BAD_STRATEGY = decision("assign_routed", [], [([], {"team": '"team_a"', "strategy": '"random"'})])
NO_TEAM = decision("assign_routed", [], [([], {"team": '"ghosts"'})])
ROUTED = (assigned_workflow(stage_decisions={2: "assign_b"}), {"a.dmn": TWO_TEAMS, "b.dmn": STAGE_TWO})


def teams_a_and_b(funnel: Funnel) -> None:
    team(funnel.engine, "team_a", ["a1", "a2"], manager="boss")
    team(funnel.engine, "team_b", ["b1", "b2"], manager="boss")


@pytest.mark.parametrize("custom", [ROUTED], indirect=True)
def test_given_a_stage_moved_back_then_it_returns_to_its_previous_owner(custom: Funnel) -> None:
    teams_a_and_b(custom)
    view = custom.start("routed", {"kind": "plain"}, actor="a2")
    assert view.assignee == "a1"
    view = custom.advance(view.id, {}, actor="a1")
    assert view.assignee == "b1"  # stage 2 declares its own decision: team_b
    custom.start("routed", {"kind": "plain"}, actor="x")  # a2 is next in team_a's rotation now
    # when
    back = custom.move(view.id, "Stage 1", actor="boss", reason="missing data")
    # then
    assert back.assignee == "a1" and explanation(custom, view.id)["basis"] == "returning"
    again = custom.advance(view.id, {}, actor="a1")
    assert again.assignee == "b1" and explanation(custom, view.id)["basis"] == "returning"


@pytest.mark.parametrize("custom", [ROUTED], indirect=True)
def test_given_a_rule_with_keep_owner_false_then_it_redecides_despite_a_manual_choice(custom: Funnel) -> None:
    teams_a_and_b(custom)
    plain = custom.start("routed", {"kind": "plain"}, actor="x")
    reroute = custom.start("routed", {"kind": "reroute"}, actor="x")
    assert (plain.assignee, reroute.assignee) == ("a1", "a2")
    for view in (plain, reroute):
        reassign(custom, view.id, to="b2", actor="boss", reason="b2 knows the customer")
        assert custom.advance(view.id, {}, actor="b2").assignee == "b2"  # stage 2 keeps the manual owner
    # when both go back to stage 1
    kept = custom.move(plain.id, "Stage 1", actor="boss", reason="recheck")
    redone = custom.move(reroute.id, "Stage 1", actor="boss", reason="recheck")
    # then the plain row keeps the manual choice; the keep_owner=False row routes afresh
    assert kept.assignee == "b2" and explanation(custom, plain.id)["basis"] == "manual"
    assert redone.assignee == "a1" and explanation(custom, reroute.id)["basis"] == "strategy"


@pytest.mark.parametrize(("custom", "message"), [
    ((assigned_workflow(), {"a.dmn": AMBIGUOUS}),
     re.escape("hit policy UNIQUE, but rows 1 (matches everything) and 2 (kind \"plain\") both match")),
    ((assigned_workflow(), {"a.dmn": BAD_STRATEGY}), "row 1 gives strategy 'random': use one of round_robin"),
], indirect=["custom"], ids=["unique-twice", "bad-strategy"])
def test_given_a_rule_that_cannot_be_followed_then_the_change_is_refused_and_nothing_is_written(
        custom: Funnel, message: str) -> None:
    teams_a_and_b(custom)
    with pytest.raises(WorkflowFailed, match=message):
        custom.start("routed", {"kind": "plain"}, actor="a1")
    with Session(custom.engine) as session:
        assert session.exec(select(Instance)).all() == []


@pytest.mark.parametrize("custom", [(assigned_workflow(), {"a.dmn": NO_TEAM})], indirect=True)
def test_given_a_rule_naming_a_missing_team_then_the_owner_keeps_it_and_an_alert_says_so(custom: Funnel) -> None:
    teams_a_and_b(custom)
    view = custom.start("routed", {}, actor="a1")
    assert view.assignee == "a1"
    [alert] = alerts(custom.engine)
    assert (alert.team, alert.manager) == ("ghosts", None)
    assert "names team 'ghosts', which does not exist" in alert.reason

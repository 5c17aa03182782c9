"""Instances over HTTP: the sales funnel and the project it starts, service requests with waiting and reopen,
refusals that change nothing, lists with filters and pages, and two writers racing."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest

from engine.instances import Funnel
from tests.api_factories import OPPORTUNITY, Caller, Staff, advance, problem_of, start
from tests.customer_factories import FUNDING_STAGE_DATA, db_snapshot
from tests.factories import FUNNEL_STAGE_DATA, STAGES, WON
from tests.service_factories import ACCEPT, FIRST_RESPONSE, INTAKE, RESOLUTION, TRIAGE, reject


def walk(caller: Caller, instance_id: int, steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Advance once per step, each time naming the version just read."""
    body = caller.get(f"/api/instances/{instance_id}").json()
    for data in steps:
        body = advance(caller, instance_id, data, expected_version=body["row_version"])
    return body


def test_given_a_won_deal_then_its_project_starts_and_is_funded_to_the_end(staff: Staff) -> None:
    alice = staff.as_("alice")
    # given an opportunity started over HTTP
    created = start(alice, customer_tier="B", data=OPPORTUNITY)
    assert (created["workflow"], created["definition_version"], created["stage"], created["status"],
            created["assignee"], created["row_version"]) == ("sales_funnel", 1, STAGES[0], "running", "alice", 1)
    assert [t["name"] for t in created["open_tasks"]] == [STAGES[0]]
    # when it goes through every stage and is won
    won = walk(alice, created["id"], [{}, *FUNNEL_STAGE_DATA[1:], WON])
    # then it is won and linked to its project, which alice funds to the end
    assert (won["status"], won["open_tasks"]) == ("won", [])
    detail = alice.get(f"/api/instances/{created['id']}").json()
    [link] = detail["links"]
    assert (link["kind"], link["direction"], link["workflow"]) == ("project", "started", "project_funding")
    assert [e["kind"] for e in detail["history"] if e["kind"] != "assigned"][:2] == ["created", "advanced"]
    project = walk(alice, link["instance_id"], FUNDING_STAGE_DATA)
    assert (project["status"], project["open_tasks"]) == ("closed", [])
    assert alice.get(f"/api/instances/{project['id']}").json()["links"][0]["direction"] == "started_by"


def test_given_unmet_criteria_when_advancing_then_422_lists_every_one_and_nothing_changes(
        funnel: Funnel, staff: Staff) -> None:
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data={})
    before = db_snapshot(funnel)
    response = alice.post(f"/api/instances/{created['id']}/advance", {"data": {"need": "coil"}})
    body = problem_of(response, 422)
    assert {u["criterion"] for u in body["unmet"]} == {"customer_known", "contact_known", "estimated_amount_positive"}
    assert all(u["message"] for u in body["unmet"])
    assert db_snapshot(funnel) == before


def test_given_a_stale_version_when_advancing_then_409_with_the_current_version(funnel: Funnel, staff: Staff) -> None:
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data=OPPORTUNITY)
    advance(alice, created["id"], {}, expected_version=1)
    before = db_snapshot(funnel)
    body = problem_of(alice.post(f"/api/instances/{created['id']}/advance",
                                 {"data": FUNNEL_STAGE_DATA[1], "expected_version": 1}), 409)
    assert body["current_version"] == 2 and "reload" in body["detail"]
    assert db_snapshot(funnel) == before


def test_given_a_later_stage_when_moved_back_or_skipped_then_the_policy_and_reason_apply(staff: Staff) -> None:
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data=OPPORTUNITY)
    walk(alice, created["id"], [{}, FUNNEL_STAGE_DATA[1]])
    url = f"/api/instances/{created['id']}/move"
    assert "reason" in problem_of(alice.post(url, {"to_stage": STAGES[0]}), 422)["detail"]
    assert "does not allow skipping" in problem_of(alice.post(url, {"to_stage": STAGES[4], "reason": "hurry"}),
                                                   422)["detail"]
    moved = alice.post(url, {"to_stage": STAGES[1], "reason": "budget withdrawn", "expected_version": 3})
    assert (moved.status_code, moved.json()["stage"]) == (200, STAGES[1])
    [back] = [e for e in alice.get(f"/api/instances/{created['id']}/history").json() if e["kind"] == "moved_back"]
    assert (back["reason"], back["from_stage"], back["to_stage"]) == ("budget withdrawn", STAGES[2], STAGES[1])


def test_given_a_service_request_then_it_waits_reopens_and_closes_through_the_api(staff: Staff) -> None:
    sue, tom = staff.as_("sue"), staff.as_("tom")
    ticket = start(sue, "service_request", data={})
    ticket = walk(sue, ticket["id"], [INTAKE, TRIAGE])
    url = f"/api/instances/{ticket['id']}"
    # waiting on the customer: needs a reason, cannot start twice, ends explicitly
    assert "needs a reason" in problem_of(sue.post(f"{url}/waiting", {"waiting": True}), 422)["detail"]
    waiting = sue.post(f"{url}/waiting", {"waiting": True, "reason": "waiting for photos of the line"}).json()
    assert waiting["waiting_since"] is not None
    assert problem_of(sue.post(f"{url}/waiting", {"waiting": True, "reason": "again"}), 409)
    assert sue.post(f"{url}/waiting", {"waiting": False}).json()["waiting_since"] is None
    # any service desk member works tickets: tom answers, the customer rejects, it reopens, then accepts
    ticket = walk(tom, ticket["id"], [FIRST_RESPONSE, RESOLUTION, reject()])
    assert (ticket["stage"], ticket["data"]["reopen_count"]) == ("Resolution", 1)
    closed = walk(tom, ticket["id"], [RESOLUTION, ACCEPT])
    assert closed["status"] != "running" and closed["open_tasks"] == []
    # out of order: a finished ticket cannot wait or advance
    assert problem_of(sue.post(f"{url}/waiting", {"waiting": True, "reason": "late"}), 409)
    assert problem_of(sue.post(f"{url}/advance", {"data": {}}), 409)
    kinds = [e["kind"] for e in sue.get(f"{url}/history").json()]
    assert {"waiting_started", "waiting_ended"} <= set(kinds)


def test_given_a_workflow_without_waiting_when_asked_to_wait_then_422_naming_the_policy(staff: Staff) -> None:
    created = start(staff.as_("alice"), customer_tier="B", data=OPPORTUNITY)
    body = problem_of(staff.as_("alice").post(f"/api/instances/{created['id']}/waiting",
                                              {"waiting": True, "reason": "x"}), 422)
    assert 'waiting="allowed"' in body["detail"]


@pytest.mark.parametrize(("url", "payload", "status", "says"), [
    ("/api/instances/999999/advance", {"data": {}}, 404, "instance 999999 does not exist"),
    ("/api/instances/abc/advance", {"data": {}}, 422, "instance_id"),
    ("/api/instances/0/advance", {"data": {}}, 422, "instance_id"),
    ("/api/instances/{id}/advance", {"data": {}, "expected_version": "1"}, 422, "expected_version"),
    ("/api/instances/{id}/advance", {"data": [1, 2]}, 422, "data"),
    ("/api/instances/{id}/advance", {"data": {}, "surprise": 1}, 422, "surprise"),
    ("/api/instances/{id}/advance", {"data": {"note": "a\u0000b"}}, 422, "NUL"),
    ("/api/instances/{id}/advance", {"data": {"1st": True}}, 422, "field name '1st' is not allowed"),
    ("/api/instances/{id}/advance", {"data": {}, "task_id": "nope"}, 404, "task nope is not open"),
    ("/api/instances/{id}/move", {"to_stage": "Nowhere", "reason": "x"}, 422, "'Nowhere' is not a stage"),
    ("/api/instances/{id}/close", {"reason": "done"}, 422, "cannot be closed early"),
    ("/api/instances", {"workflow": "no_such_flow", "data": {}}, 404, "no workflow named 'no_such_flow'"),
    ("/api/instances", {"workflow": "sales_funnel", "customer_id": 424242}, 404, "customer 424242 does not exist"),
    ("/api/instances", {"workflow": "sales_funnel", "customer_tier": "Z"}, 422, "customer_tier"),
])
def test_given_bad_input_then_a_problem_that_says_what_to_fix_and_nothing_changes(
        funnel: Funnel, staff: Staff, url: str, payload: dict[str, Any], status: int, says: str) -> None:
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data=OPPORTUNITY)
    before = db_snapshot(funnel)
    body = problem_of(alice.post(url.replace("{id}", str(created["id"])), payload), status)
    assert says in body["detail"]
    assert db_snapshot(funnel) == before


@pytest.mark.parametrize(("content", "content_type", "status"), [
    (b'{"data": ', "application/json", 422),
    (b"\xff\xfe{}", "application/json", 422),
    (b'{"data": ' * 5000 + b"1" + b"}" * 5000, "application/json", 400),
    (b'{"data": {"big": "' + b"x" * (1024 * 1024) + b'"}}', "application/json", 413),
    (b'{"data": {"note": "\\ud800"}}', "application/json", 422),
    (b'{"data": {"estimated_amount": 1' + b"0" * 400 + b"}}", "application/json", 422),
    (b'{"data": {"estimated_amount": 1e400}}', "application/json", 422),
])
def test_given_a_malformed_or_oversized_body_then_a_problem_not_a_500(
        funnel: Funnel, staff: Staff, content: bytes, content_type: str, status: int) -> None:
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data=OPPORTUNITY)
    before = db_snapshot(funnel)
    response = alice.post(f"/api/instances/{created['id']}/advance", content=content,
                          headers={"content-type": content_type})
    problem_of(response, status)
    assert db_snapshot(funnel) == before


def test_given_many_instances_then_lists_filter_page_and_show_only_what_one_may_see(staff: Staff) -> None:
    alice, bob = staff.as_("alice"), staff.as_("bob")
    mine = [start(alice, customer_tier=tier, data=OPPORTUNITY)["id"] for tier in "ABBCB"]
    advance(alice, mine[1], {})
    theirs = start(bob, customer_tier="B", data=OPPORTUNITY)["id"]
    # alice sees her five, newest first, in pages
    page = alice.get("/api/instances", params={"limit": 2, "offset": 1}).json()
    assert (page["total"], [i["id"] for i in page["items"]]) == (5, [mine[3], mine[2]])
    assert alice.get("/api/instances", params={"offset": 5}).json()["items"] == []
    # filters combine
    listed = alice.get("/api/instances", params={"tier": "B", "stage": STAGES[0]}).json()
    assert sorted(i["id"] for i in listed["items"]) == [mine[2], mine[4]]
    assert alice.get("/api/instances", params={"assignee": "bob"}).json()["total"] == 0
    # the team's manager sees both reps' work; the process owner everything
    assert staff.as_("mia").get("/api/instances", params={"assignee": "bob"}).json()["items"][0]["id"] == theirs
    assert staff.as_("olga").get("/api/instances", params={"workflow": "sales_funnel", "status": "running"}
                                 ).json()["total"] == 6
    # bounds are validated
    for params in ({"limit": 0}, {"limit": 201}, {"offset": -1}, {"tier": "E"}, {"customer_id": "x"}):
        assert problem_of(alice.get("/api/instances", params=params), 422)["errors"]


def test_given_two_parallel_advances_with_one_version_then_one_wins_and_one_gets_409(staff: Staff) -> None:
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data=OPPORTUNITY)
    barrier = threading.Barrier(2)
    results: list[httpx.Response] = []

    def go() -> None:
        barrier.wait()
        results.append(alice.post(f"/api/instances/{created['id']}/advance", {"data": {}, "expected_version": 1}))

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r.status_code for r in results) == [200, 409]
    assert next(r for r in results if r.status_code == 409).json()["current_version"] == 2
    assert alice.get(f"/api/instances/{created['id']}").json()["row_version"] == 2

"""Queues and tasks over HTTP: mine, my teams' unassigned work, a manager's whole team; completing a task is an
advance that names it (routing slips: one task per department, and an early close)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine import people
from engine.instances import Funnel
from tests.api_factories import OPPORTUNITY, Staff, problem_of, start
from tests.conftest import FakeClock
from tests.customer_factories import db_snapshot
from tests.factories import FUNNEL_STAGE_DATA
from tests.service_factories import ITEM

DEPARTMENTS = ["Sales", "Quality", "Production"]


def tasks(staff: Staff, login: str, **params: Any) -> dict[str, Any]:
    response = staff.as_(login).get("/api/tasks", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_given_work_of_several_people_then_each_queue_shows_the_right_tasks(
        funnel: Funnel, clock: FakeClock, staff: Staff) -> None:
    # given alice's and bob's opportunities, and carol (sales_south) away, so south work waits in the queue
    people.add_absence(funnel.engine, "carol", starts_at=clock.now - timedelta(hours=1),
                       ends_at=clock.now + timedelta(days=3))
    alice_ids = [start(staff.as_("alice"), customer_tier="B", data=OPPORTUNITY)["id"] for _ in range(3)]
    start(staff.as_("bob"), customer_tier="B", data=OPPORTUNITY)
    queued = start(staff.as_("sam"), customer_tier="B", data={**OPPORTUNITY, "region": "south"})
    # then: mine, oldest first, in pages
    mine = tasks(staff, "alice", queue="mine", limit=2)
    assert (mine["total"], [t["instance_id"] for t in mine["items"]]) == (3, alice_ids[:2])
    assert tasks(staff, "alice", queue="mine", offset=2)["items"][0]["instance_id"] == alice_ids[2]
    # the unassigned queue of sales_south, for its member and its manager; not for the north
    for login in ("carol", "sam"):
        waiting = tasks(staff, login, queue="unassigned")["items"]
        assert [(t["instance_id"], t["assignee"], t["team"]) for t in waiting] == [(queued["id"], None, "sales_south")]
    assert tasks(staff, "alice", queue="unassigned")["total"] == 0
    # the whole team: mia sees alice's and bob's work, sam only the south queue
    assert tasks(staff, "mia", queue="team")["total"] == 4
    assert [t["instance_id"] for t in tasks(staff, "sam", queue="team")["items"]] == [queued["id"]]
    assert tasks(staff, "root", queue="team")["total"] == 5
    # parameters are checked
    for params in ({"queue": "everything"}, {"limit": 0}, {"offset": -3}, {"stage": ""}):
        assert problem_of(staff.as_("alice").get("/api/tasks", params=params), 422)


def test_given_a_task_in_my_teams_queue_then_a_member_completes_it(funnel: Funnel, clock: FakeClock,
                                                                   staff: Staff) -> None:
    people.add_absence(funnel.engine, "carol", starts_at=clock.now - timedelta(hours=1),
                       ends_at=clock.now + timedelta(days=3))
    queued = start(staff.as_("sam"), customer_tier="B", data={**OPPORTUNITY, "region": "south"})
    task_id = queued["open_tasks"][0]["id"]
    assert problem_of(staff.as_("alice").post(f"/api/tasks/{task_id}/complete", {"data": {}}), 403)
    done = staff.as_("carol").post(f"/api/tasks/{task_id}/complete", {"data": {}, "expected_version": 1})
    assert (done.status_code, done.json()["stage"]) == (200, "Qualification")


def test_given_tasks_when_completed_then_criteria_versions_and_order_are_enforced(funnel: Funnel,
                                                                                  staff: Staff) -> None:
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data={})
    task_id = created["open_tasks"][0]["id"]
    url = f"/api/tasks/{task_id}/complete"
    before = db_snapshot(funnel)
    assert len(problem_of(alice.post(url, {"data": {"need": "coil"}}), 422)["unmet"]) == 3
    assert problem_of(alice.post(url, {"data": FUNNEL_STAGE_DATA[0], "expected_version": 9}), 409)[
        "current_version"] == 1
    assert problem_of(staff.as_("bob").post(url, {"data": FUNNEL_STAGE_DATA[0]}), 403)
    assert problem_of(alice.post("/api/tasks/no-such-task/complete", {"data": {}}), 404)
    assert db_snapshot(funnel) == before
    done = alice.post(url, {"data": FUNNEL_STAGE_DATA[0]})
    assert (done.status_code, done.json()["stage"]) == (200, "Qualification")
    again = problem_of(alice.post(url, {"data": FUNNEL_STAGE_DATA[0]}), 409)
    assert "is completed" in again["detail"] and again["current_version"] == 2


def test_given_a_routing_slip_then_departments_answer_their_tasks_and_the_owner_closes_it_early(
        funnel: Funnel, staff: Staff) -> None:
    bob = staff.as_("bob")
    slip = start(bob, "routing_slip", data={})
    slip = bob.post(f"/api/instances/{slip['id']}/advance", {"data": {**ITEM, "departments": DEPARTMENTS}}).json()
    by_name = {t["name"].removeprefix("Acknowledge and handle: "): t["id"] for t in slip["open_tasks"]}
    assert sorted(by_name) == sorted(DEPARTMENTS)
    url = f"/api/instances/{slip['id']}"
    # several open tasks: an advance must name one
    assert "task_id" in problem_of(bob.post(f"{url}/advance", {"data": {}}), 422)["detail"]
    answered = bob.post(f"/api/tasks/{by_name['Sales']}/complete",
                        {"data": {"acknowledged": True, "handling_note": "briefed the team"}})
    assert len(answered.json()["open_tasks"]) == 2
    # closing early needs a reason; then the unanswered departments are listed and nothing is open
    assert problem_of(bob.post(f"{url}/close", {}), 422)
    closed = bob.post(f"{url}/close", {"reason": "the price war ended", "expected_version": answered.json()[
        "row_version"]})
    assert closed.status_code == 200, closed.text
    body = closed.json()
    assert (body["status"], body["open_tasks"]) == ("closed_early", [])
    assert len(body["data"]["unanswered"]) == 2
    # out of order: closing or completing again is a conflict, and nothing changes
    before = db_snapshot(funnel)
    assert problem_of(bob.post(f"{url}/close", {"reason": "again"}), 409)
    assert problem_of(bob.post(f"/api/tasks/{by_name['Quality']}/complete", {"data": {"acknowledged": True}}), 409)
    assert db_snapshot(funnel) == before


@pytest.mark.parametrize("login", ["mia", "root"])
def test_given_a_manager_or_admin_when_reassigning_then_it_is_audited(staff: Staff, login: str) -> None:
    created = start(staff.as_("alice"), customer_tier="B", data=OPPORTUNITY)
    url = f"/api/instances/{created['id']}/assign"
    assert "reason" in problem_of(staff.as_(login).post(url, {"assignee": "bob"}), 422)["detail"]
    assert problem_of(staff.as_("alice").post(url, {"assignee": "bob", "reason": "holiday"}), 403)
    assert problem_of(staff.as_("sam").post(url, {"assignee": "carol", "reason": "holiday"}), 403)
    moved = staff.as_(login).post(url, {"assignee": "bob", "reason": "alice is on holiday"})
    assert (moved.status_code, moved.json()["assignee"]) == (200, "bob")
    assert moved.json()["open_tasks"][0]["assignee"] == "bob"
    events = staff.as_("bob").get(f"/api/instances/{created['id']}/history").json()
    assert [(e["actor"], e["reason"]) for e in events if e["kind"] == "reassigned"] == [(login, "alice is on holiday")]
    assert tasks(staff, "bob", queue="mine")["items"][0]["instance_id"] == created["id"]

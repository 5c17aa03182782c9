"""Reports over HTTP: the funnel per stage (count, amount, weighted amount, conversion, median time in stage)
from instances and their history, filtered by period, team, region and tier; SLA lists of at-risk and
breached work. Managers see their teams, process owners everything, reps neither."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from engine.instances import Funnel
from tests.api_factories import Staff, problem_of, start
from tests.conftest import FakeClock
from tests.factories import FUNNEL_STAGE_DATA, LOST, STAGES, advance_to
from tests.service_factories import INTAKE

DAY = 86400


def deal(staff: Staff, login: str, customer_id: int, amount: int) -> int:
    data = {**FUNNEL_STAGE_DATA[0], "estimated_amount": amount}
    return int(start(staff.as_(login), customer_id=customer_id, data=data)["id"])


@pytest.fixture
def pipeline(funnel: Funnel, clock: FakeClock, staff: Staff) -> dict[str, Any]:
    """North (alice, tier B): a1 100k, a2 50k, l1 lost at once; south (carol, tier C): c1 200k, c2 10k 3 days later.
    a1 leaves Identify after 1 day and Qualification after 2 more; a2 leaves Identify after 3 days."""
    north = staff.as_("mia").post("/api/customers", {"name": "Nordstahl", "tier": "B", "region": "north"}).json()
    south = staff.as_("sam").post("/api/customers", {"name": "Sudmetall", "tier": "C", "region": "south"}).json()
    start_at = clock.now
    a1, a2 = deal(staff, "alice", north["id"], 100000), deal(staff, "alice", north["id"], 50000)
    l1 = deal(staff, "alice", north["id"], 70000)
    advance_to(funnel, l1, 5, actor="alice")
    funnel.advance(l1, LOST, actor="alice")
    c1 = deal(staff, "carol", south["id"], 200000)
    clock.advance(days=1)
    funnel.advance(a1, {}, actor="alice")
    clock.advance(days=2)
    funnel.advance(a2, {}, actor="alice")
    funnel.advance(a1, FUNNEL_STAGE_DATA[1], actor="alice")
    c2 = deal(staff, "carol", south["id"], 10000)
    return {"start": start_at, "a1": a1, "a2": a2, "l1": l1, "c1": c1, "c2": c2}


def report(staff: Staff, login: str = "olga", **params: Any) -> dict[str, Any]:
    response = staff.as_(login).get("/api/reports/funnel", params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def figures(body: dict[str, Any]) -> list[tuple[Any, ...]]:
    return [(s["stage"], s["count"], s["amount"], s["weighted_amount"], s["entered"], s["conversion_to_next"],
             s["median_seconds_in_stage"]) for s in body["stages"]]


def test_given_a_pipeline_then_the_funnel_counts_weighs_converts_and_times_each_stage(
        staff: Staff, pipeline: dict[str, Any]) -> None:
    body = report(staff)
    assert (body["instances"], body["outcomes"]) == (5, {"lost": 1})
    assert figures(body) == [
        # stage, now in it, amount, x probability, entered, went on, median of finished stays
        (STAGES[0], 2, 210000.0, 21000.0, 5, 0.6, DAY),  # stays: l1 0, a1 1 day, a2 3 days
        (STAGES[1], 1, 50000.0, 10000.0, 3, 0.6667, DAY),  # stays: l1 0, a1 2 days
        (STAGES[2], 1, 100000.0, 40000.0, 2, 0.5, 0),
        (STAGES[3], 0, 0.0, 0.0, 1, 1.0, 0),
        (STAGES[4], 0, 0.0, 0.0, 1, None, 0),
    ]
    assert (body["total_amount"], body["total_weighted_amount"]) == (360000.0, 71000.0)


def test_given_filters_then_the_funnel_covers_only_matching_instances(staff: Staff, pipeline: dict[str, Any]) -> None:
    assert report(staff, region="SOUTH")["instances"] == 2
    assert report(staff, tier="B")["instances"] == 3
    assert report(staff, team="sales_south")["stages"][0]["count"] == 2
    since = (pipeline["start"] + timedelta(hours=1)).isoformat()
    later = report(staff, since=since)
    assert (later["instances"], later["stages"][0]["amount"]) == (1, 10000.0)
    naive = (pipeline["start"] + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert report(staff, until=naive)["instances"] == 4  # a time without an offset is UTC
    assert report(staff, workflow="service_request")["instances"] == 0


def test_given_roles_then_reps_are_refused_and_managers_see_their_own_teams(staff: Staff,
                                                                          pipeline: dict[str, Any]) -> None:
    assert problem_of(staff.as_("alice").get("/api/reports/funnel"), 403)
    assert report(staff, "mia")["instances"] == 3  # sales_north only
    assert report(staff, "mia", team="sales_north")["teams"] == ["sales_north"]
    assert "does not manage team 'sales_south'" in problem_of(
        staff.as_("mia").get("/api/reports/funnel", params={"team": "sales_south"}), 403)["detail"]
    assert report(staff, "root", team="sales_south")["instances"] == 2


@pytest.mark.parametrize(("params", "status", "says"), [
    ({"workflow": "nothing_here"}, 404, "no workflow named 'nothing_here'"),
    ({"tier": "Q"}, 422, "tier"),
    ({"since": "yesterday"}, 422, "since"),
    ({"since": "1700000000"}, 422, "ISO 8601"),
    ({"since": "2026-12-01T00:00:00Z", "until": "2026-11-01T00:00:00Z"}, 422, "until must be after since"),
])
def test_given_bad_report_parameters_then_422_or_404_saying_what_to_fix(staff: Staff, params: dict[str, str],
                                                                        status: int, says: str) -> None:
    assert says in problem_of(staff.as_("olga").get("/api/reports/funnel", params=params), status)["detail"]


def test_given_an_overdue_ticket_then_it_is_listed_as_breached_for_the_desk_and_in_its_detail(
        clock: FakeClock, staff: Staff) -> None:
    ticket = start(staff.as_("sue"), "service_request", data=INTAKE)
    assert staff.as_("sue").get("/api/sla", params={"state": "breached"}).json()["items"] == []
    clock.advance(days=30)
    breached = staff.as_("dana").get("/api/sla", params={"state": "breached"}).json()
    assert ticket["id"] in {i["instance_id"] for i in breached["items"]}
    assert all(i["clock"]["breached"] for i in breached["items"])
    detail = staff.as_("sue").get(f"/api/instances/{ticket['id']}").json()
    assert detail["sla"] and any(c["breached"] for c in detail["sla"])
    # reps see only their own work; asking for someone else's is refused
    assert staff.as_("alice").get("/api/sla", params={"state": "breached"}).json()["items"] == []
    assert problem_of(staff.as_("alice").get("/api/sla", params={"assignee": "sue"}), 403)
    assert problem_of(staff.as_("sue").get("/api/sla", params={"state": "late"}), 422)

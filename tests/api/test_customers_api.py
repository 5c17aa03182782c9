"""Customers over HTTP: create, list, read, change; a tier change needs a manager and a reason and re-tiers
open work; refusals say what to fix and change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from engine.instances import Funnel
from tests.api_factories import OPPORTUNITY, Staff, problem_of, start
from tests.customer_factories import CONTACT, db_snapshot


def create(staff: Staff, login: str = "alice", **body: Any) -> dict[str, Any]:
    response = staff.as_(login).post("/api/customers", {"name": "Acme Steel", "tier": "B", **body})
    assert response.status_code == 201, response.text
    return dict(response.json())


def test_given_a_new_customer_then_it_is_created_listed_and_read_with_its_contacts(staff: Staff) -> None:
    group = create(staff, name="Huaxia Steel Group", tier="A", region="East China")
    child = create(staff, name="Huaxia Trading", tier="B", region="Europe", parent_id=group["id"], contacts=[CONTACT])
    create(staff, name="Zeta Tools", tier="C", region="europe")
    alice = staff.as_("alice")
    read = alice.get(f"/api/customers/{child['id']}").json()
    assert (read["parent_id"], read["contacts"][0]["email"], read["row_version"]) == (group["id"], CONTACT["email"], 1)
    assert alice.get(f"/api/customers/{group['id']}").json()["subsidiaries"] == [child["id"]]
    europe = alice.get("/api/customers", params={"region": "EUROPE"}).json()
    assert (europe["total"], [c["name"] for c in europe["items"]]) == (2, ["Huaxia Trading", "Zeta Tools"])
    page = alice.get("/api/customers", params={"limit": 1, "offset": 1}).json()
    assert (page["total"], page["items"][0]["name"]) == (3, "Huaxia Trading")
    assert alice.get("/api/customers", params={"tier": "A"}).json()["total"] == 1
    added = alice.post(f"/api/customers/{group['id']}/contacts",
                       {"name": "Li Wei", "email": "li.wei@huaxia.example", "time_zone": "Asia/Shanghai"})
    assert (added.status_code, added.json()["customer_id"]) == (201, group["id"])


def test_given_a_tier_change_then_a_manager_with_a_reason_re_tiers_open_work(funnel: Funnel, staff: Staff) -> None:
    customer = create(staff)
    opportunity = start(staff.as_("alice"), customer_id=customer["id"], data=OPPORTUNITY)
    url = f"/api/customers/{customer['id']}"
    # a rep may change the region, not the tier
    assert staff.as_("alice").patch(url, {"region": "north"}).json()["region"] == "north"
    assert "changing a customer's tier" in problem_of(staff.as_("alice").patch(url, {"tier": "A", "reason": "big"}),
                                                      403)["detail"]
    # a manager needs a reason
    before = db_snapshot(funnel)
    assert "needs a reason" in problem_of(staff.as_("mia").patch(url, {"tier": "A"}), 422)["detail"]
    assert db_snapshot(funnel) == before
    changed = staff.as_("mia").patch(url, {"tier": "A", "reason": "framework contract signed", "expected_version": 2})
    assert (changed.status_code, changed.json()["tier"]) == (200, "A")
    history = staff.as_("alice").get(f"{url}/history").json()
    assert (history[-1]["kind"], history[-1]["reason"], history[-1]["actor"]) == (
        "tier_changed", "framework contract signed", "mia")
    assert staff.as_("alice").get(f"/api/instances/{opportunity['id']}").json()["customer_tier"] == "A"
    # a stale version is a conflict that names the current one
    assert problem_of(staff.as_("mia").patch(url, {"region": "south", "expected_version": 2}), 409)[
        "current_version"] == 3


@pytest.mark.parametrize(("method", "url", "payload", "status", "says"), [
    ("post", "/api/customers", {"name": "X", "tier": "E"}, 422, "tier"),
    ("post", "/api/customers", {"name": "", "tier": "B"}, 422, "name"),
    ("post", "/api/customers", {"name": "X", "tier": "B", "parent_id": 4242}, 404, "parent customer 4242"),
    ("post", "/api/customers", {"name": "X", "tier": "B", "contacts": [{**CONTACT, "email": "nope"}]}, 422,
     "email"),
    ("post", "/api/customers", {"name": "X", "tier": "B", "contacts": [{**CONTACT, "time_zone": "Mars/Base"}]},
     422, "time zone"),
    ("patch", "/api/customers/{id}", {"parent_id": "{id}"}, 422, "cycle"),
    ("patch", "/api/customers/{id}", {}, 422, "changes must be an object"),
    ("patch", "/api/customers/{id}", {"name": None}, 422, "name"),
    ("patch", "/api/customers/4242", {"region": "north"}, 404, "customer 4242"),
    ("get", "/api/customers/4242", None, 404, "customer 4242"),
])
def test_given_bad_customer_input_then_a_problem_and_nothing_changes(
        funnel: Funnel, staff: Staff, method: str, url: str, payload: dict[str, Any] | None, status: int,
        says: str) -> None:
    customer = create(staff, name="Acme")
    before = db_snapshot(funnel)
    url = url.replace("{id}", str(customer["id"]))
    if payload and payload.get("parent_id") == "{id}":
        payload = {"parent_id": customer["id"]}
    caller = staff.as_("mia")
    response = caller.get(url) if method == "get" else caller.patch(url, payload) if method == "patch" else \
        caller.post(url, payload)
    assert says in problem_of(response, status)["detail"]
    assert db_snapshot(funnel) == before

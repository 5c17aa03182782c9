"""Customers on the real engine and database: records, contacts, hierarchy, tier changes, instances' tiers."""

from __future__ import annotations

import re
import threading
from datetime import UTC
from typing import Any

import pytest
import sqlalchemy as sa

from engine import customers
from engine.errors import Conflict, FunnelError, InvalidInput, NotFound, TransitionRefused
from engine.instances import ChangeEvent, Funnel
from tests.customer_factories import CONTACT, db_snapshot, make_customer, make_group, start_for, win
from tests.factories import FUNNEL_STAGE_DATA, advance_to, start_opportunity

# ---------------------------------------------------------------- records and contacts


def test_given_valid_data_when_a_customer_is_created_then_it_is_stored_with_contacts_and_history(
    funnel: Funnel,
) -> None:
    # when
    made = make_customer(funnel, tier="A", name="  Acme Steel ", region="East China")
    # then
    got = customers.get(funnel, made.id)
    assert (got.name, got.tier, got.region, got.parent_id, got.row_version) == ("Acme Steel", "A", "East China",
                                                                                 None, 1)
    [contact] = got.contacts
    assert (contact.name, contact.email, contact.time_zone, contact.phone) == (
        "Dana Li", "dana.li@acme-steel.example", "Asia/Shanghai", "+86 21 5555 0100")
    [created] = customers.history(funnel, made.id)
    assert (created.kind, created.actor) == ("created", "mgr")
    assert created.changes["tier"] == {"from": None, "to": "A"}
    assert got.to_dict()["contacts"][0]["role"] == "Purchasing manager"


def test_given_a_customer_when_a_contact_is_added_then_it_is_listed_and_recorded(funnel: Funnel) -> None:
    made = make_customer(funnel, contacts=[])
    added = customers.add_contact(funnel, made.id, name="Jonas Becker", email="j.becker@example.de",
                                  time_zone="Europe/Berlin", phone="+49 (40) 5550-1234", actor="rep1")
    assert [c.id for c in customers.get(funnel, made.id).contacts] == [added.id]
    assert customers.history(funnel, made.id)[-1].kind == "contact_added"


BAD_CUSTOMERS: list[tuple[dict[str, Any], type[FunnelError], str, str]] = [
    ({"name": ""}, InvalidInput, "name", "name must not be empty"),
    ({"name": "   "}, InvalidInput, "name", "name must not be empty"),
    ({"name": None}, InvalidInput, "name", "name must not be empty"),
    ({"name": "x" * 201}, InvalidInput, "name", "longer than 200"),
    ({"tier": "E"}, InvalidInput, "tier", "tier must be one of A (strategic), B (key)"),
    ({"tier": "a"}, InvalidInput, "tier", "not 'a'"),
    ({"tier": None}, InvalidInput, "tier", "tier must be one of"),
    ({"tier": ["A"]}, InvalidInput, "tier", "tier must be one of"),
    ({"region": "r" * 101}, InvalidInput, "region", "longer than 100"),
    ({"parent_id": 999}, NotFound, "", "parent customer 999 does not exist: choose an existing customer"),
    ({"parent_id": "1"}, InvalidInput, "parent_id", "whole number"),
    ({"actor": " "}, InvalidInput, "actor", "actor must not be empty"),
    ({"contacts": "Dana"}, InvalidInput, "contacts", "list of contact objects"),
    ({"contacts": ["Dana"]}, InvalidInput, "contacts[0]", "must be an object"),
    ({"contacts": [{**CONTACT, "fax": "1"}]}, InvalidInput, "contacts[0]", "unknown field(s) fax"),
    ({"contacts": [{**CONTACT, "name": ""}]}, InvalidInput, "name", "name must not be empty"),
    ({"contacts": [{**CONTACT, "email": "dana"}]}, InvalidInput, "email", "like name@example.com"),
    ({"contacts": [{**CONTACT, "email": "dana@acme"}]}, InvalidInput, "email", "like name@example.com"),
    ({"contacts": [{**CONTACT, "email": "da na@acme.com"}]}, InvalidInput, "email", "not an e-mail"),
    ({"contacts": [{**CONTACT, "email": "dana..li@acme.com"}]}, InvalidInput, "email", "not an e-mail"),
    ({"contacts": [{**CONTACT, "email": None}]}, InvalidInput, "email", "email must not be empty"),
    ({"contacts": [{**CONTACT, "time_zone": "Mars/Olympus"}]}, InvalidInput, "time_zone",
     "time zone 'Mars/Olympus' is unknown: use an IANA name like Europe/Berlin"),
    ({"contacts": [{**CONTACT, "time_zone": "asia/shanghai"}]}, InvalidInput, "time_zone",
     "did you mean 'Asia/Shanghai'?"),
    ({"contacts": [{**CONTACT, "time_zone": "../../etc/passwd"}]}, InvalidInput, "time_zone", "is unknown"),
    ({"contacts": [{**CONTACT, "time_zone": "localtime"}]}, InvalidInput, "time_zone", "is unknown"),
    ({"contacts": [{**CONTACT, "time_zone": ""}]}, InvalidInput, "time_zone", "must not be empty"),
    ({"contacts": [{**CONTACT, "phone": "call me"}]}, InvalidInput, "phone", "6 to 15 digits"),
    ({"contacts": [{**CONTACT, "phone": "+1 23"}]}, InvalidInput, "phone", "6 to 15 digits"),
    ({"contacts": [CONTACT, {**CONTACT, "email": "x"}]}, InvalidInput, "email", "not an e-mail"),
]


@pytest.mark.parametrize(("change", "error", "field", "message"), BAD_CUSTOMERS)
def test_given_bad_input_when_creating_a_customer_then_refused_saying_what_to_fix_and_nothing_written(
    funnel: Funnel, change: dict[str, Any], error: type[FunnelError], field: str, message: str
) -> None:
    # given a database with one customer already
    make_customer(funnel)
    before = db_snapshot(funnel)
    args: dict[str, Any] = {"name": "New Co", "tier": "B", "actor": "mgr", "contacts": [CONTACT], **change}
    # when / then
    with pytest.raises(error) as refused:
        customers.create(funnel, **args)
    assert message in refused.value.message
    if field:
        assert getattr(refused.value, "field", None) == field
    assert db_snapshot(funnel) == before


@pytest.mark.parametrize(("change", "message"), [
    ({"email": "nope"}, "not an e-mail"),
    ({"time_zone": "Europe/Atlantis"}, "is unknown"),
    ({"name": ""}, "name must not be empty"),
    ({"phone": "12"}, "6 to 15 digits"),
])
def test_given_bad_contact_data_when_adding_a_contact_then_refused_and_nothing_written(
    funnel: Funnel, change: dict[str, Any], message: str
) -> None:
    made = make_customer(funnel)
    before = db_snapshot(funnel)
    with pytest.raises(InvalidInput, match=message):
        customers.add_contact(funnel, made.id, **{**CONTACT, **change}, actor="rep1")
    assert db_snapshot(funnel) == before


def test_given_unknown_ids_when_reading_or_writing_then_not_found(funnel: Funnel) -> None:
    with pytest.raises(NotFound, match="customer 42 does not exist"):
        customers.get(funnel, 42)
    with pytest.raises(NotFound):
        customers.history(funnel, 42)
    with pytest.raises(NotFound):
        customers.add_contact(funnel, 42, **CONTACT, actor="rep1")
    with pytest.raises(NotFound):
        customers.update(funnel, 42, {"name": "X"}, actor="mgr")
    with pytest.raises(InvalidInput, match="whole number"):
        customers.get(funnel, True)


# ---------------------------------------------------------------- listing and hierarchy


def test_given_a_group_with_subsidiaries_when_listing_then_filters_by_tier_region_and_parent(funnel: Funnel) -> None:
    group, cold, trading = make_group(funnel)
    other = make_customer(funnel, tier="D", name="Riverside Tools", region="South China")
    assert customers.get(funnel, group.id).subsidiaries == [cold.id, trading.id]
    assert [c.id for c in customers.find(funnel)] == [cold.id, group.id, trading.id, other.id]  # by name
    assert [c.id for c in customers.find(funnel, tier="A")] == [cold.id, group.id]
    assert [c.id for c in customers.find(funnel, region="east china")] == [cold.id, group.id]
    assert [c.id for c in customers.find(funnel, parent_id=group.id)] == [cold.id, trading.id]
    assert [c.id for c in customers.find(funnel, tier="B", parent_id=group.id)] == [trading.id]
    with pytest.raises(InvalidInput, match="tier must be one of"):
        customers.find(funnel, tier="Z")


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_given_a_hierarchy_when_a_customer_would_sit_below_itself_then_the_cycle_is_refused(
    funnel: Funnel, depth: int
) -> None:
    # given a chain root <- c1 <- c2 ...
    chain = [make_customer(funnel, name="Root")]
    for i in range(depth):
        chain.append(make_customer(funnel, name=f"Level {i + 1}", parent_id=chain[-1].id))
    before = db_snapshot(funnel)
    # when the root is put below the lowest member (itself when depth is 0)
    with pytest.raises(InvalidInput, match="cycle") as refused:
        customers.update(funnel, chain[0].id, {"parent_id": chain[-1].id}, actor="mgr")
    # then
    assert refused.value.field == "parent_id"
    assert "choose a parent that is not one of its subsidiaries" in refused.value.message
    assert db_snapshot(funnel) == before


def test_given_a_subsidiary_when_moved_to_another_group_then_the_hierarchy_and_history_follow(funnel: Funnel) -> None:
    group, cold, _ = make_group(funnel)
    other = make_customer(funnel, name="Other Group")
    moved = customers.update(funnel, cold.id, {"parent_id": other.id}, actor="mgr", reason="acquired")
    assert moved.parent_id == other.id and moved.row_version == 2
    assert customers.get(funnel, other.id).subsidiaries == [cold.id]
    assert cold.id not in customers.get(funnel, group.id).subsidiaries
    last = customers.history(funnel, cold.id)[-1]
    assert (last.kind, last.changes, last.reason) == ("updated", {"parent_id": {"from": group.id, "to": other.id}},
                                                      "acquired")
    # and it can become independent again
    assert customers.update(funnel, cold.id, {"parent_id": None}, actor="mgr").parent_id is None


@pytest.mark.parametrize(("changes", "error", "message"), [
    ({}, InvalidInput, "at least one of name, tier, region, parent_id"),
    ("tier=A", InvalidInput, "changes must be an object"),
    ({"owner": "bob"}, InvalidInput, "cannot change owner"),
    ({"tier": "E"}, InvalidInput, "tier must be one of"),
    ({"name": " "}, InvalidInput, "name must not be empty"),
    ({"parent_id": 999}, NotFound, "parent customer 999 does not exist"),
    ({"tier": "A"}, InvalidInput, "needs a reason"),
])
def test_given_bad_changes_when_updating_then_refused_and_nothing_written(
    funnel: Funnel, changes: Any, error: type[FunnelError], message: str
) -> None:
    made = make_customer(funnel, tier="B")
    start_for(funnel, made.id)
    before = db_snapshot(funnel)
    with pytest.raises(error, match=message):
        customers.update(funnel, made.id, changes, actor="mgr")
    assert db_snapshot(funnel) == before


def test_given_a_stale_version_when_updating_then_conflict_and_nothing_written(funnel: Funnel) -> None:
    made = make_customer(funnel)
    customers.update(funnel, made.id, {"region": "North"}, actor="mgr")
    before = db_snapshot(funnel)
    with pytest.raises(Conflict, match="at version 2, not 1") as refused:
        customers.update(funnel, made.id, {"region": "South"}, actor="mgr2", expected_version=1)
    assert refused.value.current_version == 2
    assert db_snapshot(funnel) == before


def test_given_no_actual_change_when_updating_then_nothing_is_written(funnel: Funnel) -> None:
    made = make_customer(funnel, tier="B")
    before = db_snapshot(funnel)
    assert customers.update(funnel, made.id, {"tier": "B", "name": "Acme Steel"}, actor="mgr").row_version == 1
    assert db_snapshot(funnel) == before


def test_given_the_customer_history_when_changed_directly_then_the_database_refuses(funnel: Funnel) -> None:
    make_customer(funnel)
    for statement in ("UPDATE customer_history SET actor = 'forger'", "DELETE FROM customer_history"):
        with pytest.raises(sa.exc.DatabaseError, match="append-only"), funnel.engine.begin() as conn:
            conn.execute(sa.text(statement))


# ---------------------------------------------------------------- instances and tiers


def test_given_a_customer_when_an_opportunity_starts_for_it_then_tier_and_customer_come_from_the_record(
    funnel: Funnel,
) -> None:
    made = make_customer(funnel, tier="C")
    view = start_for(funnel, made.id, contact_name="Dana Li")
    assert (view.customer_id, view.customer_tier) == (made.id, "C")
    assert view.data["customer_id"] == made.id
    # choosing the customer record satisfies "customer known" without a typed name
    advanced = funnel.advance(view.id, {**FUNNEL_STAGE_DATA[0], "customer_name": None}, actor="rep1")
    assert advanced.stage == "Qualification"
    # a matching explicit tier is accepted
    again = funnel.start("sales_funnel", {}, actor="rep1", customer_id=made.id, customer_tier="C")
    assert again.customer_tier == "C"


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"customer_id": 999}, NotFound, "customer 999 does not exist"),
    ({"customer_id": 0}, InvalidInput, "whole number"),
    ({"customer_id": "1"}, InvalidInput, "whole number"),
    ({"customer_id": 1, "customer_tier": "A"}, InvalidInput, "contradicts the tier of customer 1 ('B')"),
    ({"customer_id": 1, "data": {"customer_id": 2}}, InvalidInput, "differs from customer_id 1"),
])
def test_given_a_bad_customer_reference_when_starting_then_refused_and_nothing_written(
    funnel: Funnel, kwargs: dict[str, Any], error: type[FunnelError], message: str
) -> None:
    made = make_customer(funnel, tier="B")
    assert made.id == 1
    before = db_snapshot(funnel)
    args = dict(kwargs)
    data = args.pop("data", {})
    with pytest.raises(error, match=re.escape(message)):
        funnel.start("sales_funnel", data, actor="rep1", **args)
    assert db_snapshot(funnel) == before


def test_given_open_and_finished_instances_when_the_tier_changes_then_open_ones_follow_with_an_audit(
    funnel: Funnel, clock: Any,
) -> None:
    # given a customer with two open opportunities, a won one, and another customer's opportunity
    acme = make_customer(funnel, tier="B")
    other = make_customer(funnel, tier="B", name="Other")
    open1, open2 = start_for(funnel, acme.id), advance_to(funnel, start_for(funnel, acme.id).id, 3)
    won = win(funnel, start_for(funnel, acme.id).id)
    theirs = start_for(funnel, other.id)
    clock.advance(hours=1)
    # when
    changed = customers.update(funnel, acme.id, {"tier": "A"}, actor="kam", reason="yearly review: strategic")
    # then the customer and its history
    assert (changed.tier, changed.row_version) == ("A", 2)
    last = customers.history(funnel, acme.id)[-1]
    assert (last.kind, last.actor, last.reason, last.changes) == (
        "tier_changed", "kam", "yearly review: strategic", {"tier": {"from": "B", "to": "A"}})
    assert last.at.replace(tzinfo=last.at.tzinfo or UTC) == clock.now
    # and each open instance, in the same transaction, with its own audit event
    for before in (open1, open2):
        after = funnel.get(before.id)
        assert (after.customer_tier, after.row_version, after.stage) == ("A", before.row_version + 1, before.stage)
        event = funnel.history(before.id)[-1]
        assert (event.kind, event.actor, event.reason, event.row_version) == (
            "tier_changed", "kam", "yearly review: strategic", after.row_version)
        assert event.changes == {"customer_tier": {"from": "B", "to": "A"}}
        assert (event.from_stage, event.to_stage) == (before.stage, before.stage)
    # finished work and other customers' work are untouched
    assert funnel.get(won.id).customer_tier == "B" and funnel.history(won.id)[-1].kind == "advanced"
    assert funnel.get(theirs.id).row_version == theirs.row_version


def test_given_a_listener_when_the_tier_changes_then_it_is_told_inside_the_transaction(funnel: Funnel) -> None:
    seen: list[tuple[str, int, str | None, bool]] = []

    class Recorder:
        def after_change(self, event: ChangeEvent) -> None:
            seen.append((event.kind, event.instance.id or 0, event.instance.customer_tier,
                         event.session.in_transaction()))

    acme = make_customer(funnel, tier="C")
    view = start_for(funnel, acme.id)
    funnel.listeners.append(Recorder())
    customers.update(funnel, acme.id, {"tier": "B"}, actor="kam", reason="grew")
    assert seen == [("tier_changed", view.id, "B", True)]


def test_given_a_tier_change_when_an_advance_used_the_old_version_then_it_conflicts(funnel: Funnel) -> None:
    acme = make_customer(funnel, tier="B")
    view = start_for(funnel, acme.id, **FUNNEL_STAGE_DATA[0])
    customers.update(funnel, acme.id, {"tier": "D"}, actor="kam", reason="payment defaults")
    with pytest.raises(Conflict, match="version 2, not 1"):
        funnel.advance(view.id, {}, actor="rep1", expected_version=view.row_version)


# ---------------------------------------------------------------- the D-tier rule, with real customers


@pytest.mark.parametrize(("tier", "approval", "ok"), [("D", None, False), ("D", "ok by M. Manager", True),
                                                      ("C", None, True)])
def test_given_a_customer_of_a_tier_when_qualifying_then_d_needs_a_manager_approval(
    funnel: Funnel, tier: str, approval: str | None, ok: bool
) -> None:
    customer = make_customer(funnel, tier=tier)
    view = advance_to(funnel, start_for(funnel, customer.id).id, 2)
    data = {**FUNNEL_STAGE_DATA[1], **({"manager_approval": approval} if approval else {})}
    if ok:
        assert funnel.advance(view.id, data, actor="rep1").stage == "Development"
        return
    before = db_snapshot(funnel)
    with pytest.raises(TransitionRefused) as refused:
        funnel.advance(view.id, data, actor="rep1")
    assert [u.criterion for u in refused.value.unmet] == ["manager_approval"]
    assert "manager's recorded approval" in refused.value.unmet[0].message
    assert db_snapshot(funnel) == before


@pytest.mark.parametrize(("old", "new", "needs_approval"), [("B", "D", True), ("D", "B", False)])
def test_given_an_open_opportunity_when_its_customer_changes_tier_then_the_d_rule_follows(
    funnel: Funnel, old: str, new: str, needs_approval: bool
) -> None:
    customer = make_customer(funnel, tier=old)
    view = advance_to(funnel, start_for(funnel, customer.id).id, 2)
    customers.update(funnel, customer.id, {"tier": new}, actor="kam", reason="half-yearly adjustment")
    if needs_approval:
        with pytest.raises(TransitionRefused, match="manager_approval"):
            funnel.advance(view.id, FUNNEL_STAGE_DATA[1], actor="rep1")
    else:
        assert funnel.advance(view.id, FUNNEL_STAGE_DATA[1], actor="rep1").stage == "Development"


def test_given_an_opportunity_without_a_customer_record_then_it_works_as_before(funnel: Funnel) -> None:
    view = start_opportunity(funnel, tier="D")
    assert (view.customer_id, view.customer_tier) == (None, "D")
    assert "customer_id" not in view.data


# ---------------------------------------------------------------- demo data


def test_given_an_empty_database_when_seeding_then_a_group_tiers_a_to_d_and_two_time_zones_exist_once(
    funnel: Funnel,
) -> None:
    ids = customers.seed_customers(funnel)
    seeded = [customers.get(funnel, i) for i in ids]
    groups = [c for c in seeded if c.subsidiaries]
    assert len(groups) == 1 and len(groups[0].subsidiaries) == 2
    assert {c.tier for c in seeded} == {"A", "B", "C", "D"}
    assert {p.time_zone for c in seeded for p in c.contacts} == {"Asia/Shanghai", "Europe/Berlin"}
    assert all(c.contacts for c in seeded)
    assert customers.seed_customers(funnel) == []


def test_given_two_customers_when_each_is_put_under_the_other_at_once_then_no_cycle_is_stored(
    funnel: Funnel,
) -> None:
    # given two independent customers
    a, b = make_customer(funnel, name="A Co"), make_customer(funnel, name="B Co")
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def worker(i: int, child: int, parent: int) -> None:
        barrier.wait()
        try:
            results[i] = customers.update(funnel, child, {"parent_id": parent}, actor=f"mgr{i}")
        except FunnelError as err:
            results[i] = err

    # when both moves race
    threads = [threading.Thread(target=worker, args=(0, a.id, b.id)),
               threading.Thread(target=worker, args=(1, b.id, a.id))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then one move wins, the other is refused (a cycle, or a conflict to retry), and no cycle exists
    refused = [r for r in results if isinstance(r, FunnelError)]
    assert len(refused) == 1 and isinstance(refused[0], InvalidInput | Conflict)
    parents = {c.id: c.parent_id for c in customers.find(funnel)}
    assert set(parents.values()) in ({None, a.id}, {None, b.id})

"""SLA clocks through the real engine: service requests, the sales funnel and routing slips, on both databases.

The clock is injected (FakeClock) and the ticker is called with `now`: nothing sleeps. Times are
written in Shanghai wall-clock time because the shipped policies count in calendars/default.toml
(Mon-Fri 09:00-12:00 and 13:00-18:00); the week of 23 November 2026 has no holiday.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from engine import customers
from engine.errors import InvalidInput
from engine.instances import Funnel
from engine.models.sla import SlaClock
from engine.overrides import reassign
from engine.sla_queries import clocks_of, sla_items
from tests.conftest import FakeClock
from tests.customer_factories import make_customer
from tests.factories import FUNNEL_STAGE_DATA, start_opportunity
from tests.service_factories import ACCEPT, FIRST_RESPONSE, INTAKE, RESOLUTION, TRIAGE, reject, start_slip
from tests.service_factories import answer as answer_slip
from tests.sla_factories import (
    FRIDAY_4PM,
    MONDAY_9AM,
    all_due,
    clock_ids,
    clock_named,
    desk_roster,
    fired,
    ledger_kinds,
    outbox,
    pending_due,
    shanghai,
    tick_at,
    ticket,
)

WAIT = "Waiting for the customer's photos of the damaged coil"


def mon(hour: int, minute: int = 0):  # type: ignore[no-untyped-def]
    return shanghai(2026, 11, 23, hour, minute)


def tue(hour: int, minute: int = 0):  # type: ignore[no-untyped-def]
    return shanghai(2026, 11, 24, hour, minute)


def wed(hour: int, minute: int = 0):  # type: ignore[no-untyped-def]
    return shanghai(2026, 11, 25, hour, minute)


# ---------------------------------------------------------------- end to end


def test_given_a_ticket_on_friday_at_4pm_with_8_business_hours_then_due_monday_4pm_and_escalated_once_per_level(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a service desk, and a C-tier high-priority ticket opened Friday 16:00 (first response: 8 h)
    desk_roster(funnel.engine)
    clock.now = FRIDAY_4PM
    view = ticket(funnel, tier="C", priority="high")
    owner = view.assignee
    assert owner in ("desk1", "desk2")
    # then the deadline is Monday 16:00: Friday 16-18, Monday 09-12 and 13-16; the warning at 6 h, Monday 14:00
    first = clock_named(funnel, view.id, "first_response", clock.now)
    assert (first.status, first.target_hours, first.remaining) == ("running", 8.0, "8 h")
    assert (first.deadline, first.warning_at) == (mon(16), mon(14))
    # when the ticker runs over the weekend nothing is due; at Monday 14:00 the assignee is warned
    assert tick_at(funnel, mon(13, 59)).total == 0
    assert tick_at(funnel, mon(14)).fired == {"sla_warning": 1}
    assert fired(funnel, view.id) == [("first_response", "warning")]
    [warning] = outbox(funnel.engine, "escalation")
    assert warning.recipients == [f"{owner}@example.com"]
    assert warning.subject.startswith("[Warning] First response for service request")
    assert "2 h of business time left" in warning.text
    # at the deadline the assignee and the team's manager are told, each in their own time zone
    assert tick_at(funnel, mon(16)).fired == {"sla_breach": 1}
    breach = {m.recipients[0]: m for m in outbox(funnel.engine, "escalation")[1:]}
    assert set(breach) == {f"{owner}@example.com", "mgr@example.com"}
    assert "Mon 23 Nov 2026 09:00 CET (Europe/Berlin)" in breach["mgr@example.com"].text
    assert f"/instances/{view.id}" in breach["mgr@example.com"].text
    # 4 business hours after the breach (Tuesday 11:00) the head of service (admin role) is told
    assert tick_at(funnel, tue(10, 59)).total == 0
    assert tick_at(funnel, tue(11)).fired == {"sla_escalation": 1}
    head = outbox(funnel.engine, "escalation")[-1]
    assert head.recipients == ["head@example.com"]
    assert "Escalation level 2" in head.subject
    # and each level fired exactly once, audited with its clock, level and deadline
    tick_at(funnel, tue(11))
    assert fired(funnel, view.id) == [("first_response", "warning"), ("first_response", "breach"),
                                      ("first_response", "head")]
    audit = next(e for e in funnel.history(view.id) if e.kind == "sla_breach")
    assert audit.changes["sla"]["deadline"] == mon(16).isoformat()
    assert audit.changes["sla"]["notified"] == [owner, "mgr"]
    assert audit.actor == "system:sla"


def test_given_the_first_response_given_in_time_then_the_clock_stops_met_and_never_escalates(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a ticket opened Monday 09:00 (first response due 18:00), warned at 16:00
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    tick_at(funnel, mon(16))
    assert fired(funnel, view.id) == [("first_response", "warning")]
    assert tick_at(funnel, mon(16)).total == 0  # the warning fires once
    # when the first response is recorded at 17:00
    clock.now = mon(17)
    for data in (INTAKE, TRIAGE, FIRST_RESPONSE):
        funnel.advance(view.id, data, actor="desk1")
    # then the clock is stopped, met, its pending escalations are gone and nothing fires later
    first = clock_named(funnel, view.id, "first_response", wed(9))
    assert (first.status, first.breached, first.consumed, first.stopped_at) == ("stopped", False, "7 h", mon(17))
    assert [d.level for d in pending_due(funnel.engine) if d.clock_id == first.id] == []
    tick_at(funnel, wed(9))
    assert ("first_response", "breach") not in fired(funnel, view.id)
    assert ledger_kinds(funnel.engine, view.id, "first_response") == [("start", 1), ("stop", 1)]


# ---------------------------------------------------------------- pauses


def test_given_a_ticket_waiting_on_the_customer_then_the_deadline_moves_by_exactly_the_paused_business_time(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a ticket opened Monday 09:00 (due 18:00), waiting on the customer from 10:00 to Tuesday 11:00
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    clock.now = mon(10)
    funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=WAIT)
    # then while it waits nothing escalates, and the clock shows the time it had left
    assert tick_at(funnel, tue(10)).total == 0
    paused = clock_named(funnel, view.id, "first_response", tue(10))
    assert (paused.status, paused.consumed, paused.remaining, paused.deadline) == ("paused", "1 h", "7 h", None)
    # when the wait ends Tuesday 11:00 (9 business hours later)
    clock.now = tue(11)
    funnel.set_waiting(view.id, waiting=False, actor="desk1", reason="Photos received")
    # then the deadline is Monday 18:00 plus exactly those 9 hours: Wednesday 10:00
    resumed = clock_named(funnel, view.id, "first_response", clock.now)
    assert (resumed.status, resumed.deadline, resumed.warning_at) == ("running", wed(10), tue(17))
    assert ledger_kinds(funnel.engine, view.id, "first_response") == [("start", 1), ("pause", 1), ("resume", 1)]
    # and the warning fires at its new time
    assert tick_at(funnel, tue(16, 59)).total == 0
    assert tick_at(funnel, tue(17)).fired == {"sla_warning": 1}
    assert fired(funnel, view.id) == [("first_response", "warning")]


def test_given_a_ticket_paused_twice_then_both_waits_are_added(funnel: Funnel, clock: FakeClock) -> None:
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    for start, end in ((mon(10), mon(14)), (mon(15), tue(9, 30))):
        clock.now = start
        funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=WAIT)
        clock.now = end
        funnel.set_waiting(view.id, waiting=False, actor="desk1", reason=None)
    first = clock_named(funnel, view.id, "first_response", tue(10))
    assert (first.consumed, first.deadline) == ("2 h 30 min", tue(16, 30))


def test_given_a_ticket_created_already_waiting_then_its_clocks_start_paused(funnel: Funnel, clock: FakeClock) -> None:
    # given a ticket that waits on the customer from the moment it is created
    clock.now = MONDAY_9AM
    view = ticket(funnel, waiting=True, waiting_reason=WAIT)
    # then its clocks never ran: a day later nothing is consumed and nothing is due
    assert tick_at(funnel, tue(9)).total == 0
    first = clock_named(funnel, view.id, "first_response", tue(9))
    assert (first.status, first.consumed, first.deadline) == ("paused", "0 min", None)
    assert ledger_kinds(funnel.engine, view.id, "first_response") == [("start", 1), ("pause", 1)]
    # when the wait ends Tuesday 09:00, the full 8 hours run from there
    clock.now = tue(9)
    funnel.set_waiting(view.id, waiting=False, actor="desk1", reason=None)
    assert clock_named(funnel, view.id, "first_response", clock.now).deadline == tue(18)


def test_given_a_breach_then_pausing_does_not_undo_it(funnel: Funnel, clock: FakeClock) -> None:
    # given an A-tier urgent ticket (first response 2 h) that breached Monday 11:00, then waits from 11:30
    clock.now = MONDAY_9AM
    view = ticket(funnel, tier="A", priority="urgent")
    tick_at(funnel, mon(11))
    clock.now = mon(11, 30)
    funnel.set_waiting(view.id, waiting=True, actor="desk1", reason=WAIT)
    # then the next morning it is still breached (overdue by the 30 minutes it ran late), listed as breached
    first = clock_named(funnel, view.id, "first_response", tue(8, 30))
    assert (first.status, first.breached, first.deadline, first.remaining) == ("paused", True, mon(11),
                                                                               "overdue 30 min")
    assert [i.clock.name for i in sla_items(funnel.engine, state="breached", now=tue(8, 30))] == ["first_response"]
    # and the next level (4 h past the breach) waits for the clock to run again: 3 h 30 min after the resume
    assert tick_at(funnel, tue(8, 30)).total == 0
    clock.now = tue(9)
    funnel.set_waiting(view.id, waiting=False, actor="desk1", reason=None)
    tick_at(funnel, tue(13, 29))
    assert ("first_response", "head") not in fired(funnel, view.id)
    tick_at(funnel, tue(13, 30))
    assert ("first_response", "head") in fired(funnel, view.id)


# ---------------------------------------------------------------- targets follow tier and priority


def test_given_a_tier_change_mid_flight_then_the_deadline_is_rederived_keeping_the_consumed_time(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a C-tier customer's high-priority ticket opened Monday 09:00 (first response 8 h: due 18:00)
    clock.now = MONDAY_9AM
    acme = make_customer(funnel, tier="C")
    view = funnel.start("service_request", {**INTAKE, "priority": "high"}, actor="desk1", customer_id=acme.id)
    assert clock_named(funnel, view.id, "first_response", clock.now).deadline == mon(18)
    # when the customer becomes B-tier at 11:00 (2 h consumed; B + high: 4 h)
    clock.now = mon(11)
    customers.update(funnel, acme.id, {"tier": "B"}, actor="kam", reason="key account from now on")
    # then 2 hours are left from 11:00: 11-12 and 13-14
    first = clock_named(funnel, view.id, "first_response", clock.now)
    assert (first.target_hours, first.consumed, first.remaining, first.deadline) == (4.0, "2 h", "2 h", mon(14))
    retarget = first.events[-1]
    assert (retarget.kind, retarget.target_hours, retarget.reason) == ("retarget", 4.0,
                                                                      "target 8 h -> 4 h (tier_changed)")
    assert [(d.level, d.due_at) for d in pending_due(funnel.engine) if d.clock_id == first.id] == [
        ("warning", mon(12)), ("breach", mon(14)), ("head", mon(18))]  # 3 h used up at the 12:00 close


def test_given_the_priority_raised_at_intake_then_the_target_shrinks_keeping_the_consumed_time(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a low-priority C ticket (first response 16 h) opened Monday 09:00
    clock.now = MONDAY_9AM
    view = ticket(funnel, priority="low")
    assert clock_named(funnel, view.id, "first_response", clock.now).target_hours == 16.0
    # when intake records it as urgent at 11:00 (C + urgent: 8 h)
    clock.now = mon(11)
    funnel.advance(view.id, {**INTAKE, "priority": "urgent"}, actor="desk1")
    # then 6 hours are left from 11:00
    first = clock_named(funnel, view.id, "first_response", clock.now)
    assert (first.target_hours, first.consumed, first.deadline) == (8.0, "2 h", mon(18))


def test_given_a_reassignment_then_the_clock_keeps_running_and_the_next_level_reaches_the_new_assignee(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a ticket of the service desk opened Monday 09:00
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    before = clock_named(funnel, view.id, "first_response", clock.now)
    other = "desk2" if view.assignee == "desk1" else "desk1"
    # when the manager gives it to the other agent at 11:00
    clock.now = mon(11)
    reassign(funnel, view.id, to=other, actor="mgr", reason="desk1 is at a customer site")
    # then it is the same clock with the same deadline and ledger
    after = clock_named(funnel, view.id, "first_response", clock.now)
    assert (after.id, after.deadline, after.consumed, len(after.events)) == (before.id, mon(18), "2 h", 1)
    # and the warning (Monday 16:00) goes to the new assignee
    tick_at(funnel, mon(16))
    assert [m.recipients for m in outbox(funnel.engine, "escalation")] == [[f"{other}@example.com"]]
    [warning] = [e for e in funnel.history(view.id) if e.kind == "sla_warning"]
    assert warning.changes["sla"]["notified"] == [other]


def test_given_a_rejected_resolution_then_the_resolution_clock_restarts_and_keeps_its_history(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a ticket resolved on Monday (resolution clock: 09:00-12:00, met)
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    for data in (INTAKE, TRIAGE, FIRST_RESPONSE):
        funnel.advance(view.id, data, actor="desk1")
    clock.now = mon(12)
    funnel.advance(view.id, RESOLUTION, actor="desk1")
    assert clock_named(funnel, view.id, "resolution", clock.now).status == "stopped"
    # when the customer rejects it Tuesday 09:00 (the ticket reopens at Resolution)
    clock.now = tue(9)
    funnel.advance(view.id, reject(), actor="desk1")
    # then the resolution clock runs again from Tuesday 09:00 with its full target, cycle 1 kept
    resolution = clock_named(funnel, view.id, "resolution", clock.now)
    assert (resolution.status, resolution.cycle, resolution.consumed, resolution.started_at) == (
        "running", 2, "0 min", tue(9))
    assert resolution.deadline == shanghai(2026, 11, 26, 18)  # 24 h: Tuesday, Wednesday and Thursday
    [first_round] = resolution.previous_cycles
    assert (first_round.cycle, first_round.consumed, first_round.breached) == (1, "3 h", False)
    assert ledger_kinds(funnel.engine, view.id, "resolution") == [("start", 1), ("stop", 1), ("start", 2)]
    # and the first response, which was met, is not touched
    assert clock_named(funnel, view.id, "first_response", clock.now).cycle == 1
    # when the customer accepts the second resolution the ticket closes and every clock stops
    funnel.advance(view.id, RESOLUTION, actor="desk1")
    funnel.advance(view.id, ACCEPT, actor="desk1")
    assert {c.status for c in clocks_of(funnel.engine, view.id, clock.now)} == {"stopped"}
    assert pending_due(funnel.engine) == []


# ---------------------------------------------------------------- per-task clocks


def test_given_an_opportunity_then_each_stage_has_its_own_clock(funnel: Funnel, clock: FakeClock) -> None:
    clock.now = MONDAY_9AM
    view = start_opportunity(funnel, tier="B")
    clock.now = mon(11)
    funnel.advance(view.id, FUNNEL_STAGE_DATA[0], actor="rep1")
    identify, qualify = clocks_of(funnel.engine, view.id, clock.now)
    assert (identify.title, identify.status, identify.consumed, identify.target_hours) == (
        "Time in stage: Identify opportunity", "stopped", "2 h", 16.0)
    assert (qualify.title, qualify.status, qualify.target_hours, qualify.stage) == (
        "Time in stage: Qualification", "running", 40.0, "Qualification")
    # moving back opens the earlier stage again: its clock restarts (a new cycle), the first visit kept
    clock.now = mon(15)
    funnel.move(view.id, "Identify opportunity", actor="rep1", reason="the need changed")
    identify, qualify = clocks_of(funnel.engine, view.id, clock.now)
    assert (identify.status, identify.cycle, identify.consumed, identify.started_at) == ("running", 2, "0 min", mon(15))
    assert [(c.cycle, c.consumed) for c in identify.previous_cycles] == [(1, "2 h")]
    assert (qualify.status, qualify.consumed) == ("stopped", "3 h")


def test_given_a_routing_slip_then_each_departments_answer_has_its_own_clock(funnel: Funnel, clock: FakeClock) -> None:
    clock.now = MONDAY_9AM
    view = start_slip(funnel, ["Sales", "Quality"])
    clock.now = mon(14)
    answer_slip(funnel, view.id, "Sales")
    by_title = {c.title: c for c in clocks_of(funnel.engine, view.id, clock.now)}
    assert set(by_title) == {"Department answer: Sales", "Department answer: Quality"}
    assert (by_title["Department answer: Sales"].status, by_title["Department answer: Sales"].consumed) == (
        "stopped", "4 h")
    quality = by_title["Department answer: Quality"]
    assert (quality.status, quality.target_hours, quality.deadline) == ("running", 16.0, tue(18))
    items = sla_items(funnel.engine, state="all", now=clock.now, workflow="routing_slip")
    assert [i.clock.title for i in items] == ["Department answer: Quality"]


def test_given_a_slip_closed_early_then_the_open_departments_clocks_stop_and_never_escalate(
    funnel: Funnel, clock: FakeClock
) -> None:
    clock.now = MONDAY_9AM
    view = start_slip(funnel, ["Sales", "Quality"])
    clock.now = mon(10)
    funnel.close_early(view.id, actor="author1", reason="the information is outdated")
    assert {(c.status, c.consumed) for c in clocks_of(funnel.engine, view.id, clock.now)} == {("stopped", "1 h")}
    assert pending_due(funnel.engine) == []
    assert tick_at(funnel, wed(12)).total == 0


def test_given_a_workflow_without_a_policy_then_it_has_no_clocks(funnel: Funnel) -> None:
    view = funnel.start("project_funding", {}, actor="fin1", customer_tier="B")
    assert clocks_of(funnel.engine, view.id, funnel.clock()) == []
    with Session(funnel.engine) as session:
        assert session.exec(select(SlaClock)).all() == []


# ---------------------------------------------------------------- lists for the API


def test_given_clocks_in_several_states_then_lists_filter_at_risk_and_breached(funnel: Funnel, clock: FakeClock
                                                                            ) -> None:
    # given three tickets opened Monday 09:00: A urgent (2 h), B high (4 h), C low (16 h)
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    urgent, high, low = (ticket(funnel, tier=t, priority=p) for t, p in (("A", "urgent"), ("B", "high"),
                                                                          ("C", "low")))
    now = mon(12)  # urgent: breached at 11:00; high: 3 h of 4 consumed, at risk; low: fine
    breached = sla_items(funnel.engine, state="breached", now=now)
    assert [(i.instance_id, i.clock.name) for i in breached] == [(urgent.id, "first_response")]
    assert breached[0].clock.remaining == "overdue 1 h" and breached[0].customer_tier == "A"
    at_risk = sla_items(funnel.engine, state="at_risk", now=now)
    assert [(i.instance_id, i.clock.name) for i in at_risk] == [(high.id, "first_response")]
    assert at_risk[0].clock.at_risk and not at_risk[0].clock.breached
    everything = sla_items(funnel.engine, state="all", now=now, limit=500)
    assert len(everything) == 6
    assert [i.clock.deadline for i in everything] == sorted(i.clock.deadline for i in everything)
    assert len(sla_items(funnel.engine, state="all", now=now, limit=2, offset=5)) == 1
    mine = sla_items(funnel.engine, state="all", now=now, assignee=low.assignee)
    assert low.id in {i.instance_id for i in mine}
    assert sla_items(funnel.engine, state="all", now=now, workflow="sales_funnel") == []


@pytest.mark.parametrize(("kwargs", "field"), [({"state": "late"}, "state"), ({"limit": 0}, "limit"),
                                               ({"limit": 501}, "limit"), ({"offset": -1}, "offset")])
def test_given_bad_list_arguments_then_invalid_input_names_the_field(funnel: Funnel, kwargs: dict, field: str) -> None:
    arguments = {"state": "all", "now": MONDAY_9AM, **kwargs}
    with pytest.raises(InvalidInput) as refused:
        sla_items(funnel.engine, **arguments)
    assert refused.value.field == field


def test_given_a_naive_now_then_refused(funnel: Funnel) -> None:
    with pytest.raises(InvalidInput):
        clocks_of(funnel.engine, 1, MONDAY_9AM.replace(tzinfo=None))


def test_given_every_due_row_then_each_level_exists_once_per_clock_and_cycle(funnel: Funnel, clock: FakeClock) -> None:
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    mine = clock_ids(funnel.engine, view.id)
    levels = sorted((d.clock_id, d.cycle, d.level) for d in all_due(funnel.engine) if d.clock_id in mine)
    assert len(levels) == len(set(levels)) == 6  # two clocks x warning, breach, head
    assert timedelta(0) < min(d.due_at for d in all_due(funnel.engine)) - clock.now

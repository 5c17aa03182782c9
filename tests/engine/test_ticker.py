"""The ticker: due escalations and SpiffWorkflow timers fire exactly once, at the injected `now`.

Exactly once across processes (two tickers, two engines, one database), after downtime (every missed
event once), under a crashed worker's lease, and never after the clock stopped. Timers of the shipped
routing slip fire through the same tick with the injected clock, not SpiffWorkflow's real one.
"""

from __future__ import annotations

import multiprocessing
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.bootstrap import open_funnel
from engine.instances import Funnel
from engine.models import AuditEvent
from engine.models.sla import SlaDue
from engine.ticker import next_due, tick
from tests.conftest import FakeClock, make_settings
from tests.service_factories import FIRST_RESPONSE, INTAKE, TRIAGE, instance_row, start_slip, task_states
from tests.service_factories import answer as answer_slip
from tests.sla_factories import (
    FRIDAY_4PM,
    MONDAY_9AM,
    all_due,
    desk_roster,
    due_of,
    fired,
    outbox,
    pending_due,
    shanghai,
    sla_events,
    tick_at,
    ticket,
)


def mon(hour: int, minute: int = 0) -> datetime:
    return shanghai(2026, 11, 23, hour, minute)


def wed(hour: int, minute: int = 0) -> datetime:
    return shanghai(2026, 11, 25, hour, minute)


def timer_events(funnel: Funnel) -> list[AuditEvent]:
    with Session(funnel.engine) as session:
        stmt = select(AuditEvent).where(AuditEvent.kind == "timer_fired").order_by(col(AuditEvent.id))
        return list(session.exec(stmt))


# ---------------------------------------------------------------- exactly once


def _tick_in_process(url: str, now: datetime, worker: str, barrier: Any, results: Any) -> None:
    """A separate process with its own engine: wait for the other, then tick once with a small batch."""
    funnel = open_funnel(make_settings(url), clock=lambda: now, sync=False)
    try:
        barrier.wait(timeout=120)
        result = tick(funnel, now=now, worker_id=worker, batch=7)
        results.put(("ok", worker, result.total, result.failed))
    except Exception as err:  # reported to the parent, which fails the test with it
        results.put(("error", worker, 0, [repr(err)]))
    finally:
        funnel.engine.dispose()


def test_given_two_tickers_in_two_processes_then_every_level_and_timer_fires_exactly_once(
    db_url: str, funnel: Funnel, clock: FakeClock
) -> None:
    # given 12 urgent A-tier tickets and 3 routing slips from Monday 09:00, all of whose levels and
    # chase timers are due by Wednesday 09:00
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    tickets = [ticket(funnel, tier="A", priority="urgent").id for _ in range(12)]
    slips = [start_slip(funnel, ["Sales", "Quality"], actor="desk1").id for _ in range(3)]
    now = wed(9)
    due = [d for d in all_due(funnel.engine) if d.due_at <= now]
    assert len(due) == 12 * 6 + 3 * 2 * 2  # tickets: 2 clocks x 3 levels; slips: 2 departments x 2 levels
    # when two worker processes, each with its own engine, tick at the same moment
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_tick_in_process, args=(db_url, now, f"worker-{n}", barrier, results))
             for n in (1, 2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    # then between them they fired every level and every timer once: no duplicate anywhere
    assert [(status, failed) for status, _, _, failed in outcomes] == [("ok", []), ("ok", [])], outcomes
    assert sum(total for _, _, total, _ in outcomes) == len(due) + len(slips)
    levels = Counter((e.changes["sla"]["clock_id"], e.changes["sla"]["cycle"], e.changes["sla"]["level"])
                     for e in sla_events(funnel))
    assert len(levels) == len(due) and set(levels.values()) == {1}
    assert Counter(e.instance_id for e in timer_events(funnel)) == Counter(slips)
    assert pending_due(funnel.engine) == [] or all(d.due_at > now for d in pending_due(funnel.engine))
    mails = outbox(funnel.engine)
    assert len({m.dedupe_key for m in mails}) == len(mails)
    assert Counter(m.kind for m in mails)["chase"] == 3 * 2  # each slip: one reminder per open department
    assert {e.instance_id for e in sla_events(funnel)} == set(tickets) | set(slips)
    # and a third tick finds nothing left
    assert tick_at(funnel, now).total == 0


def test_given_two_hours_of_downtime_then_every_missed_event_fires_exactly_once(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a ticker that last ran Monday 14:00 (the first ticket's warning fired then) and then stopped
    desk_roster(funnel.engine)
    clock.now = FRIDAY_4PM
    late = ticket(funnel, tier="C", priority="high")  # first response: warning Mon 14:00, breach Mon 16:00
    clock.now = shanghai(2026, 11, 21, 15)  # Saturday 15:00: the slip's chase is due Monday 15:00
    slip = start_slip(funnel, ["Sales"], actor="desk1")
    clock.now = mon(14)
    urgent = ticket(funnel, tier="A", priority="urgent")  # first response 2 h: warning 15:30, breach 16:00
    assert tick_at(funnel, mon(14)).fired == {"sla_warning": 1}
    # when it comes back two hours later
    result = tick_at(funnel, mon(16))
    # then each event missed meanwhile fired once, in one tick
    assert result.fired == {"sla_breach": 2, "sla_warning": 1} and result.timers == 1
    assert fired(funnel, late.id) == [("first_response", "warning"), ("first_response", "breach")]
    assert fired(funnel, urgent.id) == [("first_response", "warning"), ("first_response", "breach")]
    assert [e.instance_id for e in timer_events(funnel)] == [slip.id]
    before = len(outbox(funnel.engine))
    # and ticking again (or another worker catching up) adds nothing
    assert tick_at(funnel, mon(16)).total == 0
    assert tick_at(funnel, mon(16), worker="other").total == 0
    assert len(outbox(funnel.engine)) == before


def test_given_more_due_than_a_batch_then_one_tick_loops_until_nothing_is_due(funnel: Funnel, clock: FakeClock
                                                                           ) -> None:
    clock.now = MONDAY_9AM
    for _ in range(3):
        ticket(funnel, tier="A", priority="urgent")
    result = tick(funnel, now=wed(9), worker_id="w", batch=2)
    assert sum(result.fired.values()) == 3 * 6 and result.passes > 3
    assert [d for d in pending_due(funnel.engine) if d.due_at <= wed(9)] == []


def test_given_a_crashed_workers_claim_then_its_lease_expires_and_the_level_fires_once(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given the warning of a ticket (Monday 16:00) claimed by a worker that crashed before firing it
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    leased_until = mon(16) + timedelta(seconds=60)
    with Session(funnel.engine) as session:
        session.execute(sa.update(SlaDue).where(col(SlaDue.level) == "warning", due_of(view.id))
                        .values(claimed_by="crashed", lease_until=leased_until))
        session.commit()
    # then while the lease runs nobody else fires it; once it expires the next tick does, once
    assert tick_at(funnel, mon(16)).total == 0
    assert tick_at(funnel, leased_until + timedelta(seconds=1)).fired == {"sla_warning": 1}
    assert fired(funnel, view.id) == [("first_response", "warning")]


def test_given_a_claimed_level_whose_clock_stops_before_it_fires_then_it_never_fires(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a claimed (not yet fired) warning of a ticket
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    with Session(funnel.engine) as session:
        session.execute(sa.update(SlaDue).where(due_of(view.id))
                        .values(claimed_by="slow", lease_until=mon(15)))
        session.commit()
    # when the first response is given at 15:30 (the claim has not fired yet)
    clock.now = mon(15, 30)
    for data in (INTAKE, TRIAGE, FIRST_RESPONSE):
        funnel.advance(view.id, data, actor="desk1")
    # then the first-response levels are gone, and no later tick fires them
    tick_at(funnel, wed(9))
    assert [lv for clock_name, lv in fired(funnel, view.id) if clock_name == "first_response"] == []


def test_next_due_is_the_earliest_pending_level_or_timer(funnel: Funnel, clock: FakeClock) -> None:
    assert next_due(funnel.engine) is None
    clock.now = MONDAY_9AM
    ticket(funnel)  # first response warning Monday 16:00
    assert next_due(funnel.engine) == mon(16)
    clock.now = shanghai(2026, 11, 21, 10)  # a slip sent Saturday 10:00 is chased Monday 10:00
    start_slip(funnel, ["Sales"], actor="desk1")
    assert next_due(funnel.engine) == mon(10)
    tick_at(funnel, mon(10))
    assert next_due(funnel.engine) == mon(16)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_given_postgresql_when_a_loop_asks_next_due_often_then_it_holds_no_transaction_and_stays_prepared(
        funnel: Funnel, clock: FakeClock) -> None:
    # given one pooled connection and a pending level
    clock.now = MONDAY_9AM
    ticket(funnel)
    funnel.engine.dispose()
    # when a ticking loop asks when something is next due, often enough for psycopg to prepare the query (5 times)
    for _ in range(8):
        assert next_due(funnel.engine) == mon(16)
    # then the query is still prepared on that connection: no ROLLBACK (which deallocates them all) came after it
    with funnel.engine.connect() as conn:
        prepared = conn.exec_driver_sql(
            "SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE '%%lease_until%%'").scalar_one()
    assert prepared == 1, "next_due ran inside a transaction: its ROLLBACK deallocated the prepared query"


# ---------------------------------------------------------------- SpiffWorkflow timers


def test_given_a_routing_slip_then_its_chase_fires_through_the_tick_with_the_injected_clock_and_a_late_answer_counts(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given a slip sent Monday 09:00 to two departments (the real clock is far from the test's)
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    view = start_slip(funnel, ["Sales", "Quality"], actor="desk1")
    chase_at = MONDAY_9AM + timedelta(days=2)
    assert instance_row(funnel, view.id).next_due_at == chase_at  # "P2D" on the injected clock
    clock.now = MONDAY_9AM + timedelta(days=1)
    answer_slip(funnel, view.id, "Sales")
    # when the ticker runs just before and at the due time
    assert tick_at(funnel, chase_at - timedelta(seconds=1)).timers == 0
    assert task_states(funnel, view.id, "chase_timer") == ["WAITING"]
    result = tick_at(funnel, chase_at)
    # then the timer fired once, the department that has not answered is chased, and it is audited
    assert result.timers == 1
    assert task_states(funnel, view.id, "chase_timer") == ["COMPLETED"]
    [chase] = outbox(funnel.engine, "chase")
    assert chase.recipients == ["desk1@example.com"]
    assert chase.subject.startswith("Reminder: Quality has not answered")
    [event] = timer_events(funnel)
    assert event.at == chase_at and event.actor == "system:timer"
    assert [(c["department"], c["to"]) for c in event.changes["chased"]] == [("Quality", ["desk1"])]
    assert instance_row(funnel, view.id).next_due_at is None
    assert tick_at(funnel, chase_at + timedelta(hours=1)).timers == 0
    # and the late answer is still accepted: the slip closes
    clock.now = chase_at + timedelta(hours=2)
    closed = answer_slip(funnel, view.id, "Quality")
    assert closed.status == "closed"
    assert [e.kind for e in funnel.history(view.id)][-2:] == ["timer_fired", "advanced"]


def test_given_a_slip_answered_by_everyone_before_the_chase_then_nothing_is_due(funnel: Funnel, clock: FakeClock
                                                                             ) -> None:
    clock.now = MONDAY_9AM
    view = start_slip(funnel, ["Sales"], actor="desk1")
    answer_slip(funnel, view.id, "Sales")
    assert instance_row(funnel, view.id).next_due_at is None
    assert tick_at(funnel, wed(12)).total == 0
    assert outbox(funnel.engine) == []


def test_given_an_aware_now_is_required(funnel: Funnel) -> None:
    with pytest.raises(ValueError, match="aware"):
        tick(funnel, now=MONDAY_9AM.replace(tzinfo=None), worker_id="w")

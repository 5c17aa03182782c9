"""Escalation levels fire in batches: one transaction and a few statements per claimed batch, exactly once.

The batch must write exactly what firing row by row writes (the fallback path), put back a row it cannot
decide while the others fire, fall back to row by row when its transaction fails, and stay exactly-once
with two tickers racing over many rows.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, col, select

import engine.ticker
import engine.ticker_batch
from engine.bootstrap import open_funnel
from engine.instances import Funnel
from engine.models import AuditEvent, HumanTask
from engine.models.sla import SlaClock, SlaDue
from engine.ticker import LEASE, TickResult, next_due, tick
from tests.conftest import FakeClock, make_settings
from tests.customer_factories import make_customer
from tests.service_factories import INTAKE, start_slip, start_ticket
from tests.sla_factories import (
    MONDAY_9AM,
    all_due,
    clock_ids,
    desk_roster,
    outbox,
    pending_due,
    shanghai,
    sla_events,
    ticket,
)

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def wed(hour: int, minute: int = 0) -> datetime:
    return shanghai(2026, 11, 25, hour, minute)


def due_by(funnel: Funnel, now: datetime) -> list[SlaDue]:
    return [d for d in pending_due(funnel.engine) if d.due_at <= now]


def fired_levels(funnel: Funnel) -> Counter[tuple[int, int, str]]:
    """How often each (clock, cycle, level) was audited as fired."""
    return Counter((e.changes["sla"]["clock_id"], e.changes["sla"]["cycle"], e.changes["sla"]["level"])
                   for e in sla_events(funnel))


def failed_id(failure: str) -> int:
    """The due row a TickResult.failed entry ("sla_due 17: WorkflowFailed: ...") names."""
    return int(failure.split(":")[0].removeprefix("sla_due "))


def set_due(funnel: Funnel, due_id: int, **values: Any) -> None:
    with Session(funnel.engine) as session:
        session.execute(sa.update(SlaDue).where(col(SlaDue.id) == due_id).values(**values))
        session.commit()


def set_task(funnel: Funnel, instance_id: int, name: str, **values: Any) -> None:
    with Session(funnel.engine) as session:
        session.execute(sa.update(HumanTask).where(col(HumanTask.instance_id) == instance_id,
                                                   col(HumanTask.name) == name).values(**values))
        session.commit()


def poison_clock(funnel: Funnel, clock_id: int, calendar: str = "no-such-calendar") -> None:
    """A clock whose calendar does not exist: deciding its levels raises."""
    with Session(funnel.engine) as session:
        session.execute(sa.update(SlaClock).where(col(SlaClock.id) == clock_id).values(calendar=calendar))
        session.commit()


@contextmanager
def counting(funnel: Funnel) -> Iterator[Counter[str]]:
    """Count the statements sent and the transactions committed on the funnel's engine meanwhile."""
    seen: Counter[str] = Counter()

    def statement(*_: Any) -> None:
        seen["statements"] += 1

    def commit(*_: Any) -> None:
        seen["commits"] += 1

    sa.event.listen(funnel.engine, "before_cursor_execute", statement)
    sa.event.listen(funnel.engine, "commit", commit)
    try:
        yield seen
    finally:
        sa.event.remove(funnel.engine, "before_cursor_execute", statement)
        sa.event.remove(funnel.engine, "commit", commit)


def row_by_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every batch transaction fail, so the ticker fires each row on its own (the fallback path)."""
    def failing(*_: Any, **__: Any) -> None:
        raise sa.exc.OperationalError("INSERT INTO outbox ...", {}, Exception("disk I/O error"))

    monkeypatch.setattr(engine.ticker_batch, "enqueue_many", failing)


# ---------------------------------------------------------------- one batch, one transaction


def urgent_tickets(funnel: Funnel, clock: FakeClock, count: int = 25) -> list[SlaDue]:
    """`count` urgent A-tier tickets opened Monday 09:00; the levels due by Wednesday 09:00 (6 each)."""
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    for _ in range(count):
        ticket(funnel, tier="A", priority="urgent")
    due = due_by(funnel, wed(9))
    assert len(due) == count * 6
    return due


def test_given_many_due_levels_then_one_transaction_claims_and_fires_them_all_each_once(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given 25 urgent A-tier tickets from Monday 09:00: 150 levels are due by Wednesday 09:00
    due = urgent_tickets(funnel, clock)
    # when one tick claims them all in one batch
    with counting(funnel) as seen:
        result = tick(funnel, now=wed(9), worker_id="w", batch=500)
    # then every level fired once, at `now`, with its e-mails
    assert sum(result.fired.values()) == len(due) and result.failed == [] and result.skipped == 0
    assert set(fired_levels(funnel).values()) == {1} and len(fired_levels(funnel)) == len(due)
    assert {d.fired_at for d in all_due(funnel.engine) if d.id in {x.id for x in due}} == {wed(9)}
    mails = outbox(funnel.engine, "escalation")
    assert len(mails) == result.emails > 0 and len({m.dedupe_key for m in mails}) == len(mails)
    # and it claimed and fired them in one transaction (no second pass: the batch was not full), a few statements
    assert seen["commits"] == 1
    assert seen["statements"] <= 16  # 10-11 today, for 30 levels as for 600


def test_given_more_due_than_a_batch_then_one_tick_takes_pass_after_pass_until_one_is_not_full(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given 150 due levels and batches of 50
    due = urgent_tickets(funnel, clock)
    # when one tick runs
    result = tick(funnel, now=wed(9), worker_id="w", batch=50)
    # then it fired all of them: three full passes and a fourth that found nothing
    assert sum(result.fired.values()) == len(due) == 150 and result.passes == 4
    assert all(d.fired_at == wed(9) for d in all_due(funnel.engine) if d.id in {x.id for x in due})


def twin_desks(urls: tuple[str, str], fill: Callable[[Funnel], None]) -> tuple[Funnel, Funnel]:
    """Two identical databases (the desk roster, then `fill`), Monday 09:00: one to fire in batches, one row by
    row."""
    def desk(url: str) -> Funnel:
        funnel = open_funnel(make_settings(url), clock=FakeClock(MONDAY_9AM))
        desk_roster(funnel.engine)
        fill(funnel)
        return funnel

    return desk(urls[0]), desk(urls[1])


def tick_both(batched: Funnel, one_by_one: Funnel, monkeypatch: pytest.MonkeyPatch) -> tuple[TickResult, TickResult]:
    """Tick both at Wednesday 09:00: the first in batches, the second row by row (its batches fail)."""
    first = tick(batched, now=wed(9), worker_id="w")
    with monkeypatch.context() as patch:
        row_by_row(patch)
        second = tick(one_by_one, now=wed(9), worker_id="w")
    return first, second


def test_given_the_same_busy_desk_then_a_batch_writes_exactly_what_firing_row_by_row_writes(
    db_url: str, twin_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two identical databases: tickets of every tier (two of them paused a while), routing slips (per-task
    # clocks, chase timers), one level due too early (it must move to its real time) and one the policy no longer
    # knows (dropped)
    def busy_desk(funnel: Funnel) -> None:
        tickets = [ticket(funnel, tier=tier, priority=priority)
                   for tier, priority in [("A", "urgent"), ("B", "high"), ("C", "high"), ("A", "normal")] * 3]
        # two tickets wait on the customer for a while: their ledgers hold a pause and a resume
        assert isinstance(funnel.clock, FakeClock)
        funnel.clock.advance(hours=1)
        for view in tickets[:2]:
            funnel.set_waiting(view.id, waiting=True, actor="desk1", reason="Photos asked for")
        funnel.clock.advance(hours=3)
        for view in tickets[:2]:
            funnel.set_waiting(view.id, waiting=False, actor="desk1", reason="Photos received")
        slip = start_slip(funnel, ["Sales", "Quality"], actor="desk1")
        start_slip(funnel, ["Logistics"], actor="desk1")
        # the slip's per-task clocks name their tasks: one held by someone else, one waiting in a team's queue
        set_task(funnel, slip.id, "Acknowledge and handle: Sales", assignee="desk2")
        set_task(funnel, slip.id, "Acknowledge and handle: Quality", assignee=None, team="service_desk")
        later = [d for d in pending_due(funnel.engine) if d.due_at > wed(9)]
        set_due(funnel, later[0].id, due_at=wed(8))
        set_due(funnel, later[1].id, due_at=wed(8), level="retired")

    batched, one_by_one = twin_desks((db_url, twin_db_url), busy_desk)
    # when one ticks with batches and the other row by row
    first, second = tick_both(batched, one_by_one, monkeypatch)
    # then both fired, moved and dropped the same, with the same audit entries and the same e-mails
    assert (first.fired, first.emails, first.skipped, first.timers) == \
        (second.fired, second.emails, second.skipped, second.timers)
    assert first.skipped == 2 and first.failed == second.failed == []
    assert _written(batched) == _written(one_by_one)
    for funnel in (batched, one_by_one):
        funnel.engine.dispose()


def _written(funnel: Funnel) -> str:
    """Every audit entry, due row and e-mail, with Spiff's random task ids numbered in order of appearance."""
    with Session(funnel.engine) as session:
        audit = [e.model_dump(exclude={"id"}) for e in session.exec(select(AuditEvent).order_by(col(AuditEvent.id)))]
        due = [d.model_dump(exclude={"claimed_by", "lease_until"})
               for d in session.exec(select(SlaDue).order_by(col(SlaDue.id)))]
    mails = [m.model_dump(exclude={"id"}) for m in outbox(funnel.engine)]
    text = json.dumps({"audit": audit, "due": due, "outbox": mails}, default=str, indent=1)
    seen: dict[str, str] = {}
    return UUID.sub(lambda m: seen.setdefault(m.group(0), f"<task {len(seen)}>"), text)


# ---------------------------------------------------------------- failures


def test_given_a_level_that_cannot_be_decided_then_it_is_put_back_and_the_rest_of_its_batch_fires(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given 6 urgent tickets (36 levels due) and one clock whose calendar is missing (3 of them)
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    for _ in range(6):
        ticket(funnel, tier="A", priority="urgent")
    due = due_by(funnel, wed(9))
    poisoned = due[0].clock_id
    poison_clock(funnel, poisoned)
    bad = sorted(d.id for d in due if d.clock_id == poisoned)
    # when one tick fires them in one batch
    result = tick(funnel, now=wed(9), worker_id="w", batch=500)
    # then the tick ends, the others fired once, and the three are reported and wait, still claimed
    assert sum(result.fired.values()) == len(due) - 3
    assert sorted(failed_id(f) for f in result.failed) == bad
    assert all("WorkflowFailed" in f and "no-such-calendar" in f for f in result.failed)
    assert {(d.id, d.fired_at, d.claimed_by) for d in pending_due(funnel.engine) if d.id in bad} == \
        {(i, None, "w") for i in bad}
    assert set(fired_levels(funnel).values()) == {1}
    # and once the calendar is back and the lease has run out, they fire, once
    poison_clock(funnel, poisoned, "default")
    assert tick(funnel, now=wed(9) + LEASE - timedelta(seconds=1), worker_id="w").total == 0
    assert sum(tick(funnel, now=wed(9) + LEASE + timedelta(seconds=1), worker_id="w").fired.values()) == 3
    assert len(fired_levels(funnel)) == len(due) and set(fired_levels(funnel).values()) == {1}


def test_given_a_batch_whose_transaction_fails_then_its_rows_fire_one_by_one_and_a_poisoned_one_waits(
    funnel: Funnel, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given 4 urgent tickets (24 levels due), one clock poisoned, and a database refusing the batch's insert
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    for _ in range(4):
        ticket(funnel, tier="A", priority="urgent")
    due = due_by(funnel, wed(9))
    poison_clock(funnel, due[-1].clock_id)
    bad = {d.id for d in due if d.clock_id == due[-1].clock_id}
    row_by_row(monkeypatch)
    # when a tick fires them
    result = tick(funnel, now=wed(9), worker_id="w", batch=500)
    # then every other row fired on its own, once; the poisoned ones are reported and still pending
    assert sum(result.fired.values()) == len(due) - len(bad)
    assert {failed_id(f) for f in result.failed} == bad and len(result.failed) == len(bad)
    assert all(f.startswith(f"sla_due {failed_id(f)}: WorkflowFailed: ") for f in result.failed)
    assert set(fired_levels(funnel).values()) == {1} and len(fired_levels(funnel)) == len(due) - len(bad)
    assert {d.id for d in due_by(funnel, wed(9))} == bad
    mails = outbox(funnel.engine)
    assert len({m.dedupe_key for m in mails}) == len(mails) == result.emails


# ---------------------------------------------------------------- two tickers racing


def _race(url: str, now: datetime, worker: str, barrier: Any, results: Any) -> None:
    funnel = open_funnel(make_settings(url), clock=lambda: now, sync=False)
    try:
        barrier.wait(timeout=120)
        result = tick(funnel, now=now, worker_id=worker, batch=40)
        results.put(("ok", sum(result.fired.values()), result.emails, result.failed))
    except Exception as err:
        results.put(("error", 0, 0, [repr(err)]))
    finally:
        funnel.engine.dispose()


def test_given_two_tickers_racing_over_many_levels_in_batches_then_none_is_lost_or_doubled(
    db_url: str, funnel: Funnel, clock: FakeClock
) -> None:
    # given 40 urgent tickets: 240 levels due
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    for _ in range(40):
        ticket(funnel, tier="A", priority="urgent")
    due = due_by(funnel, wed(9))
    assert len(due) == 240
    # when two processes tick at once in batches of 40
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(db_url, wed(9), f"racer-{n}", barrier, results)) for n in (1, 2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    # then between them every level fired once and every e-mail was written once
    assert [(status, failed) for status, _, _, failed in outcomes] == [("ok", []), ("ok", [])], outcomes
    assert sum(n for _, n, _, _ in outcomes) == len(due)
    assert len(fired_levels(funnel)) == len(due) and set(fired_levels(funnel).values()) == {1}
    mails = outbox(funnel.engine)
    assert len({m.dedupe_key for m in mails}) == len(mails) == sum(e for _, _, e, _ in outcomes)
    assert due_by(funnel, wed(9)) == []


# ---------------------------------------------------------------- next_due


def test_next_due_counts_a_live_lease_but_not_past_an_earlier_free_level(funnel: Funnel, clock: FakeClock) -> None:
    # given one ticket whose pending levels are placed by hand: 10:00 (leased to 12:00), 11:00 and later ones
    clock.now = MONDAY_9AM
    view = ticket(funnel)
    rows = sorted(pending_due(funnel.engine), key=lambda d: d.id)
    mine = clock_ids(funnel.engine, view.id)
    rows = [d for d in rows if d.clock_id in mine]
    set_due(funnel, rows[0].id, due_at=wed(10), claimed_by="busy", lease_until=wed(12))
    set_due(funnel, rows[1].id, due_at=wed(11))
    for later in rows[2:]:
        set_due(funnel, later.id, due_at=wed(17))
    # then the free 11:00 level is next; leased as well, the 10:00 one's lease end (12:00) is
    assert next_due(funnel.engine) == wed(11)
    set_due(funnel, rows[1].id, claimed_by="busy", lease_until=wed(13))
    assert next_due(funnel.engine) == wed(12)
    # and an expired lease earlier than its level counts as the level's own due time
    set_due(funnel, rows[0].id, lease_until=wed(9))
    assert next_due(funnel.engine) == wed(10)


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_given_a_due_level_locked_by_a_concurrent_change_then_the_batch_skips_it_and_a_later_tick_fires_it(
    funnel: Funnel, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given 2 urgent tickets (12 levels due) and, while the batch runs, a change holding one of them for 1 s
    desk_roster(funnel.engine)
    clock.now = MONDAY_9AM
    for _ in range(2):
        ticket(funnel, tier="A", priority="urgent")
    due = due_by(funnel, wed(9))
    held = due[3].id
    real = engine.ticker_batch.fire_batch
    waited: list[float] = []
    releasers: list[threading.Timer] = []

    def with_a_lock_held(funnel_: Funnel, **kwargs: Any) -> Any:
        if releasers:
            return real(funnel_, **kwargs)
        conn = funnel.engine.connect()
        tx = conn.begin()
        conn.execute(sa.update(SlaDue).where(col(SlaDue.id) == held).values(due_at=SlaDue.due_at))
        started = time.monotonic()
        releasers.append(threading.Timer(1.0, lambda: (tx.commit(), conn.close())))
        releasers[0].start()
        outcome = real(funnel_, **kwargs)
        waited.append(time.monotonic() - started)
        return outcome

    monkeypatch.setattr(engine.ticker, "fire_batch", with_a_lock_held)
    # when a tick fires them
    result = tick(funnel, now=wed(9), worker_id="w", batch=500)
    # then the batch did not wait for the lock: it fired the others, and left the held one free and pending
    assert waited and waited[0] < 1.0
    assert sum(result.fired.values()) == len(due) - 1 and result.failed == []
    [held_row] = [d for d in all_due(funnel.engine) if d.id == held]
    assert (held_row.fired_at, held_row.claimed_by) == (None, None)
    # and once the change committed, the next tick fires it, once
    releasers[0].join()
    assert next_due(funnel.engine) == held_row.due_at
    assert sum(tick(funnel, now=wed(9), worker_id="w", batch=500).fired.values()) == 1
    assert len(fired_levels(funnel)) == len(due) and set(fired_levels(funnel).values()) == {1}
    [held_row] = [d for d in all_due(funnel.engine) if d.id == held]
    assert held_row.fired_at == wed(9)


def test_given_a_customer_named_only_in_the_customer_table_then_both_paths_name_it_in_the_escalation_mails(
    db_url: str, twin_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # given two identical databases, each with an urgent ticket that names its customer by id only
    def ticket_of_a_customer(funnel: Funnel) -> None:
        acme = make_customer(funnel, tier="A", name="Zhang Metals")
        data = {k: v for k, v in INTAKE.items() if k != "customer_name"}
        start_ticket(funnel, data={**data, "priority": "urgent"}, customer_tier="A", customer_id=acme.id)

    batched, one_by_one = twin_desks((db_url, twin_db_url), ticket_of_a_customer)
    # when one fires its levels in a batch and the other row by row
    first, second = tick_both(batched, one_by_one, monkeypatch)
    assert sum(first.fired.values()) == sum(second.fired.values()) == 6
    # then every escalation e-mail names the customer from its table, the same on both paths
    for funnel in (batched, one_by_one):
        mails = outbox(funnel.engine, "escalation")
        assert mails and {m.context["customer"]["name"] for m in mails} == {"Zhang Metals"}
        assert all("Zhang Metals" in m.context["item"]["title"] for m in mails)
    assert _written(batched) == _written(one_by_one)
    for funnel in (batched, one_by_one):
        funnel.engine.dispose()


def test_given_an_address_changed_in_sql_between_two_ticks_then_the_second_batch_mails_the_new_one(
    funnel: Funnel, clock: FakeClock
) -> None:
    # given an urgent ticket whose first level has fired (this process now holds a copy of the people tables)
    due = sorted(d.due_at for d in urgent_tickets(funnel, clock, count=1))
    first = tick(funnel, now=due[0], worker_id="w")
    assert first.emails > 0 and due[-1] > due[0]
    # when an administrator changes every address in SQL, not through the service
    with Session(funnel.engine) as session:
        session.execute(sa.text("UPDATE app_user SET email = replace(email, '@example.com', '@new.example.com')"))
        session.commit()
    second = tick(funnel, now=wed(9), worker_id="w")
    # then the next batch's e-mails go to the new addresses only (the stamp read with the clocks was new)
    mails = outbox(funnel.engine, "escalation")
    assert second.emails > 0 and len(mails) == first.emails + second.emails
    assert {m.recipients[0].split("@")[1] for m in mails[:first.emails]} == {"example.com"}
    assert {m.recipients[0].split("@")[1] for m in mails[first.emails:]} == {"new.example.com"}

"""Round-robin fairness: the pointer survives roster edits, and concurrent assignments lose no update."""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine import people
from engine.bootstrap import open_funnel
from engine.instances import Funnel
from engine.models.people import RotationPointer, Team
from engine.rotation import pick
from tests.conftest import WORKFLOWS, FakeClock, make_settings
from tests.people_factories import assigned_events, opportunity, sales_roster, team, user

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def next_owner(engine: Engine, name: str, *, strategy: str = "round_robin") -> str | None:
    """One assignment in its own transaction, as the listener makes it inside an instance change."""
    with Session(engine) as session:
        row = session.exec(select(Team).where(Team.name == name)).one()
        chosen = pick(session, row, now=NOW, strategy=strategy).assignee
        session.commit()
    return chosen


def pointer_count(engine: Engine, name: str) -> int:
    with Session(engine) as session:
        row = session.exec(select(Team).where(Team.name == name)).one()
        pointer = session.get(RotationPointer, row.id)
        return pointer.assignments if pointer else 0


# ---------------------------------------------------------------- the pointer across roster edits


@pytest.mark.parametrize(("edit", "expected"), [
    (lambda e: people.remove_member(e, "t", "b"), "c"),  # the last one left: their successor is next
    (lambda e: people.set_members(e, "t", ["d", "c", "b", "a"]), "a"),  # reordered: after b in the new order
    (lambda e: people.add_member(e, "t", "e", position=3), "e"),  # someone joined right after b
    (lambda e: people.set_members(e, "t", ["a", "d"]), "d"),  # b and c gone at once: the first survivor after b
    (lambda e: people.deactivate_user(e, "c"), "d"),  # c left the company: skipped
    (lambda e: people.set_members(e, "t", ["e"]), "e"),  # everyone replaced
])
def test_given_b_was_last_when_the_roster_is_edited_then_the_rotation_continues_after_b(
        funnel: Funnel, edit: Any, expected: str) -> None:
    team(funnel.engine, "t", ["a", "b", "c", "d"])
    user(funnel.engine, "e")
    assert [next_owner(funnel.engine, "t") for _ in range(2)] == ["a", "b"]
    # when
    edit(funnel.engine)
    # then
    assert next_owner(funnel.engine, "t") == expected


def test_given_the_last_user_left_and_the_team_is_reordered_later_then_the_rotation_still_follows(
        funnel: Funnel) -> None:
    team(funnel.engine, "t", ["a", "b", "c", "d"])
    assert [next_owner(funnel.engine, "t") for _ in range(2)] == ["a", "b"]
    people.remove_member(funnel.engine, "t", "b")
    people.set_members(funnel.engine, "t", ["d", "a", "c"])  # c followed b; c is still there
    assert [next_owner(funnel.engine, "t") for _ in range(3)] == ["c", "d", "a"]


def assert_fair(picks: list[str | None], members: set[str]) -> None:
    counts = Counter(picks)
    assert set(counts) == members, counts
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_given_a_thousand_assignments_with_roster_edits_between_then_each_segment_is_fair(funnel: Funnel) -> None:
    engine = funnel.engine
    team(engine, "t", ["a", "b", "c", "d"])
    for login in ("e", "f"):
        user(engine, login)
    edits: list[tuple[Any, set[str]]] = [
        (lambda: None, {"a", "b", "c", "d"}),
        (lambda: people.add_member(engine, "t", "e", position=2), {"a", "b", "c", "d", "e"}),
        (lambda: people.remove_member(engine, "t", "c"), {"a", "b", "d", "e"}),
        (lambda: people.set_members(engine, "t", ["e", "d", "b", "a", "f"]), {"a", "b", "d", "e", "f"}),
        (lambda: people.deactivate_user(engine, "d"), {"a", "b", "e", "f"}),
    ]
    total = 0
    for edit, present in edits:
        edit()
        picks = [next_owner(engine, "t") for _ in range(200)]
        total += len(picks)
        assert_fair(picks, present)
    assert total == 1000 == pointer_count(engine, "t")


def test_given_least_loaded_without_open_work_then_ties_go_round_the_team(funnel: Funnel) -> None:
    team(funnel.engine, "t", ["a", "b", "c"])
    picks = [next_owner(funnel.engine, "t", strategy="least_loaded") for _ in range(6)]
    assert picks == ["a", "b", "c", "a", "b", "c"]


# ---------------------------------------------------------------- concurrency


def test_given_simultaneous_opportunities_in_threads_then_no_assignment_is_lost(
        funnel: Funnel, clock: FakeClock) -> None:
    sales_roster(funnel.engine, now=clock.now)
    n = 9
    barrier = threading.Barrier(n)
    owners: list[str | None] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        owners[i] = opportunity(funnel, region="north", actor=f"rep{i}").assignee

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert Counter(owners) == {"alice": 3, "bob": 3, "nora": 3}
    assert pointer_count(funnel.engine, "sales_north") == n


def _start_many(url: str, count: int, barrier: Any, results: Any) -> None:
    """A separate process with its own engine: start `count` northern opportunities as fast as it can."""
    f = open_funnel(make_settings(url, WORKFLOWS), clock=lambda: NOW, sync=False)
    try:
        barrier.wait(timeout=120)
        owners = [opportunity(f, region="north", actor="proc").assignee for _ in range(count)]
        results.put(("ok", owners))
    except Exception as err:  # reported to the parent, which fails the test with it
        results.put(("error", repr(err)))
    finally:
        f.engine.dispose()


@pytest.mark.postgres
def test_given_two_processes_assigning_at_once_on_postgresql_then_the_pointer_loses_nothing(pg_url: str) -> None:
    # given a migrated schema with the shipped workflows and the demo roster
    parent = open_funnel(make_settings(pg_url, WORKFLOWS), clock=lambda: NOW)
    sales_roster(parent.engine, now=NOW)
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    count = 30
    # when two processes, each with its own engine, start opportunities for the same team at once
    procs = [ctx.Process(target=_start_many, args=(pg_url, count, barrier, results)) for _ in range(2)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=240) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    # then every assignment moved the pointer once and the rotation stayed exact
    assert [status for status, _ in outcomes] == ["ok", "ok"], outcomes
    owners = [o for _, batch in outcomes for o in batch]
    assert Counter(owners) == {"alice": 20, "bob": 20, "nora": 20}
    assert pointer_count(parent.engine, "sales_north") == 2 * count
    assert sum(len(assigned_events(parent, i)) for i in range(1, 2 * count + 1)) == 2 * count
    parent.engine.dispose()

"""Two writers on one instance: exactly one wins, the other is told the current version; no corruption."""

from __future__ import annotations

import threading
from typing import Any

from sqlmodel import Session, select

from engine.errors import Conflict, FunnelError, TransitionRefused
from engine.instances import Funnel
from engine.models import AuditEvent, Instance
from engine.spiff import Workflow
from tests.factories import FUNNEL_STAGE_DATA, start_opportunity


def race(funnel: Funnel, instance_id: int, n: int, **kwargs: Any) -> list[Any]:
    """Run `n` advances of one instance at the same moment in `n` threads; return results or errors."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = funnel.advance(instance_id, FUNNEL_STAGE_DATA[0], actor=f"rep{i}", **kwargs)
        except FunnelError as err:
            results[i] = err

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def assert_consistent(funnel: Funnel, instance_id: int, version: int) -> None:
    with Session(funnel.engine) as session:
        row = session.get(Instance, instance_id)
        assert row is not None
        events = session.exec(select(AuditEvent).where(AuditEvent.instance_id == instance_id)).all()
    assert row.row_version == version
    assert len(events) == version  # one 'created' plus one per successful change
    restored = Workflow.restore(funnel.definitions.get(row.definition_version_id).specs, row.state)
    assert [t.task_spec.bpmn_name for t in restored.ready_human_tasks()] == [row.stage]


def test_given_two_advances_with_the_same_expected_version_then_exactly_one_wins(funnel: Funnel) -> None:
    # given
    view = start_opportunity(funnel)
    # when
    results = race(funnel, view.id, 2, expected_version=1)
    # then
    wins = [r for r in results if not isinstance(r, Exception)]
    conflicts = [r for r in results if isinstance(r, Conflict)]
    assert len(wins) == 1 and len(conflicts) == 1
    assert conflicts[0].current_version == 2
    assert wins[0].stage == "Qualification"
    assert_consistent(funnel, view.id, 2)


def test_given_many_simultaneous_advances_without_a_version_then_one_wins_and_state_is_whole(
    funnel: Funnel,
) -> None:
    # given
    view = start_opportunity(funnel)
    # when eight writers race (those that read after the winner committed see stage 2 and are refused)
    results = race(funnel, view.id, 8)
    # then
    wins = [r for r in results if not isinstance(r, Exception)]
    assert len(wins) == 1
    assert all(isinstance(r, Conflict | TransitionRefused) for r in results if isinstance(r, Exception))
    assert_consistent(funnel, view.id, 2)

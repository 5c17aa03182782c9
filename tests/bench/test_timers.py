"""bench.timers.settle: lateness is the earlier of two upper bounds on a row's commit, never less than either allows."""

from __future__ import annotations

from typing import Any

import pytest

from bench.timers import Phase, settle

DUE_US = 1_000_000_000  # a due instant, in microseconds since the epoch (1,000 s)


def _phase(**rows: tuple[float, float, tuple[str, int] | None]) -> Phase:
    """A phase whose rows (name -> observer window (lo, hi) in s, firing tick or None) were all due at DUE_US."""
    phase = Phase("test", len(rows))
    for name, (lo, hi, tick) in rows.items():
        phase.due_us[name] = DUE_US
        phase.seen[name] = (lo, hi)
        if tick is not None:
            phase.fired_by[name] = tick
    return phase


def _late(phase: Phase) -> dict[Any, float]:
    return {name: round(ms, 3) for name, ms in zip(phase.seen, phase.lateness_ms, strict=True)}


def test_given_a_tick_that_ended_inside_the_observers_window_when_settled_then_its_end_bounds_the_commit() -> None:
    # given: seen by a poll that ended 40 ms after the due instant; its tick returned 12 ms after it
    phase = _phase(a=(1000.002, 1000.040, ("w0", 999_000_000)))

    # when
    settle(phase, {("w0", 999_000_000): 1000.012})

    # then: 12 ms late, where the observer alone says 40
    assert _late(phase) == {"a": 12.0}
    assert phase.observer_ms == [pytest.approx(40.0)]
    assert phase.observe_err_ms == [pytest.approx(38.0)]
    assert (phase.early, phase.untimed) == (0, 0)


def test_given_a_tick_that_ended_after_the_observer_saw_the_row_when_settled_then_the_observer_bounds_it() -> None:
    # given: a long tick (a burst) that returned long after this row was seen
    phase = _phase(a=(1000.002, 1000.005, ("w1", 999_000_000)))

    # when
    settle(phase, {("w1", 999_000_000): 1003.0})

    # then
    assert _late(phase) == {"a": 5.0}


def test_given_a_tick_end_before_the_window_opened_when_settled_then_it_is_counted_early_and_not_used() -> None:
    # given: the tick says it ended before the observer's previous poll began, when the row was not committed yet
    phase = _phase(a=(1000.030, 1000.040, ("w0", 999_000_000)))

    # when
    settle(phase, {("w0", 999_000_000): 1000.010})

    # then: the clocks disagree; the observer's bound stands, so the figure is never flattered
    assert _late(phase) == {"a": 40.0}
    assert phase.early == 1


def test_given_rows_whose_tick_left_no_end_when_settled_then_the_observer_alone_bounds_them() -> None:
    # given: one row fired by a tick nobody recorded, one with no firing tick at all
    phase = _phase(a=(1000.001, 1000.020, ("w0", 123)), b=(1000.001, 1000.025, None))

    # when
    settle(phase, {("w0", 999_000_000): 1000.005})

    # then
    assert _late(phase) == {"a": 20.0, "b": 25.0}
    assert phase.untimed == 2

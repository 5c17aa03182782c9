"""bench.timers: lateness is the earlier of two upper bounds on a row's commit, never less than either allows
(settle), and of several steady rounds the median one stands for a mode, with every round's losses counted."""

from __future__ import annotations

from typing import Any

import pytest

from bench.timers import Phase, Sizes, details, median_round, rows_for, settle, steady_rounds

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


# ---------------------------------------------------------------- rounds


def _steady(name: str, p99_ms: float, *, lost: int = 0, duplicated: int = 0) -> Phase:
    """A measured phase of 100 rows, 99 of them 1 ms late and one `p99_ms` late (so its p99 is about that)."""
    phase = Phase(name, 100, lost=lost, duplicated=duplicated)
    phase.lateness_ms = [1.0] * 98 + [float(p99_ms)] * 2
    return phase


def _burst(name: str) -> Phase:
    phase = Phase(name, 10)
    phase.lateness_ms = [100.0] * 10
    return phase


def test_given_rounds_out_of_order_when_listed_then_they_come_in_round_order_and_only_that_modes() -> None:
    # given
    phases = {"ours steady #2": _steady("b", 2), "floor steady #1": _steady("f", 9), "ours steady #10": _steady("c", 3),
              "ours steady #1": _steady("a", 1), "ours burst": _burst("x")}

    # when / then
    assert [p.name for p in steady_rounds(phases, "ours")] == ["a", "b", "c"]


@pytest.mark.parametrize(("p99s", "chosen"), [([30, 10, 20], 20), ([5], 5), ([40, 10], 10), ([9, 1, 7, 3], 3)])
def test_given_rounds_when_the_median_is_taken_then_the_middle_p99_or_the_lower_middle_one_stands(
        p99s: list[float], chosen: float) -> None:
    # given
    rounds = [_steady(f"r{k}", p) for k, p in enumerate(p99s)]

    # when
    median = median_round(rounds)

    # then
    assert median.lateness_ms[-1] == chosen


def test_given_three_rounds_each_when_rows_are_made_then_the_median_rounds_compare_and_every_loss_is_summed() -> None:
    # given: a noisy neighbour spoiled ours in round 2 and the floor in round 3; one row lost in round 3
    phases = {"floor steady #1": _steady("f1", 4), "ours steady #1": _steady("o1", 12),
              "ours steady #2": _steady("o2", 90), "floor steady #2": _steady("f2", 5),
              "floor steady #3": _steady("f3", 60, duplicated=2), "ours steady #3": _steady("o3", 14, lost=1),
              "floor burst": _burst("fb"), "ours burst": _burst("ob")}
    info = {"processes": 2}

    # when
    steady, burst = rows_for("postgresql", phases, info, Sizes.of(quick=True))

    # then: the median rounds (14 ms against 5 ms) stand; no round's loss or duplicate is hidden
    assert (steady.ours, steady.baseline) == (pytest.approx(14.0), pytest.approx(5.0))
    assert steady.extra["ours"]["lost"] == 1
    assert [(r["ours_p99_ms"], r["floor_p99_ms"]) for r in steady.extra["rounds"]] == [(12, 4), (90, 5), (14, 60)]
    assert steady.extra["all_rounds"] == {"lost": 1, "duplicated": 0, "floor_lost": 0, "floor_duplicated": 2}
    assert burst.scenario == "timers, postgresql: burst 5k queued"
    text = details([steady])
    assert "#1 12.0/4.0, #2 90.0/5.0, #3 14.0/60.0" in text
    assert "ours lost=1 dup=0, floor lost=0 dup=2" in text

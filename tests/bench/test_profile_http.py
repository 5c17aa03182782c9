"""bench.profile_http: the server times every advance after the warm-up, and its parts fit inside its CPU time."""

from __future__ import annotations

from pathlib import Path

from bench.engine_advance import STAGE_DATA
from bench.profile_http import ServerTimes, profile, report


def test_given_a_tiny_run_then_the_server_timed_each_advance_after_the_warm_up_and_the_parts_fit(
        db_url: str, tmp_path: Path) -> None:
    # given the real app served with its ticker, warmed up on 4 instances (2 connections)
    # when 3 more instances go through every stage over HTTP
    found = profile(db_url, tmp_path, connections=2, instances=3)
    # then every advance succeeded and the server timed exactly those (the warm-up's were let pass)
    assert found["errors"] == 0 and found["ok"] == 3 * len(STAGE_DATA)
    times = ServerTimes(**found["server"])
    assert times.advances == 3 * len(STAGE_DATA)
    assert times.verifies == times.advances  # one token check per timed request, none of the warm-up's
    # and the engine's part of the server's CPU time is real and no bigger than the whole
    assert 0 < times.advance_cpu <= times.window_cpu and 0 < times.verify_cpu < times.window_cpu
    assert times.window_wall > 0 and times.advance_wall > 0
    text = report(found, kind="test", connections=2)
    assert "engine advance (CPU)" in text and "token check (CPU)" in text

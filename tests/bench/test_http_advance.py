"""Scenario 2's plumbing: request lanes never share an instance, and a tiny run against both real servers has
no errors (so the path, body and token the benchmark sends are what the API accepts)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from bench.engine_advance import STAGE_DATA
from bench.http_advance import Sizes, lanes, measure, rows_for

TINY = Sizes(warmup_instances=2, closed_seconds=0.1, paced_seconds=0.1, paced_min_requests=8)


def test_given_ids_then_each_lane_owns_its_instances_and_advances_them_stage_by_stage() -> None:
    planned = lanes(list(range(1, 11)), 4)
    owned = [{path for _, path, _ in lane} for lane in planned]
    assert sum(len(o) for o in owned) == len(set().union(*owned)) == 10  # disjoint, every id once
    for lane in planned:
        per_stage = len(lane) // len(STAGE_DATA)
        assert [body["data"] for _, _, body in lane[::per_stage]] == STAGE_DATA  # stage-major order
        assert all(method == "POST" and path.endswith("/advance") for method, path, _ in lane)


@pytest.mark.parametrize("workers", [1, 2])
def test_given_a_tiny_run_then_both_apps_answer_every_advance_without_errors(db_url: str, tmp_path: Path,
                                                                            workers: int) -> None:
    with ThreadPoolExecutor(1) as loadgen:  # the servers are still their own processes
        base = measure("trivial", db_url, tmp_path, TINY, loadgen, ticker=False, connections=2, workers=workers)
        ours = measure("real", db_url, tmp_path, TINY, loadgen, ticker=True, connections=2, workers=workers)
    throughput, latency = rows_for("test", base, ours, ticker=True, connections=2, workers=workers)
    assert throughput.extra["workers"] == workers
    assert throughput.extra["errors"] == throughput.extra["baseline_errors"] == 0, throughput.extra
    assert throughput.ours > 0 and throughput.baseline > 0
    assert latency.extra["paced"]["statuses"] == {"200": latency.extra["paced"]["requests"]}
    assert latency.ours > 0 and latency.extra["p50_ms"] <= latency.ours

"""`python -m bench.profile_http`: where the server's time per HTTP advance goes, engine against the rest.

Scenario 2 serves far fewer advances over HTTP than the engine makes in-process. This serves the real app as
bench.http_advance does (one uvicorn worker, the ticker beside it), runs an untimed warm-up and then one closed
loop of advances from the load-generator process, and reads inside the server (timed by wrapping the calls there,
from the first advance after the warm-up to the last):
- the server process's CPU time per request, and its CPU share of the wall time (1.0: it was never waiting, so
  more connections cannot raise the rate; only less CPU per request can);
- the wall and CPU time of each engine advance (engine.instances.Funnel.advance: load, criteria, SpiffWorkflow,
  the write and its listeners, the commit) and of each token check (engine.auth.verify);
- the rest of the server's CPU per request: uvicorn, FastAPI's routing, validation and thread-pool hops, the
  reply, the ticker.
Read it beside `python -m bench.engine_advance --quick` (the same advances in-process) and `python -m
bench.profile_advance` (inside the engine advance). Linux only (it reads /proc). Not part of `./dev bench`: it
measures no goal, it says where one is lost.

`python -m bench.profile_http [--db sqlite|postgresql] [--connections N] [--instances N]`
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.common import database
from bench.engine_advance import STAGE_DATA
from bench.http_advance import CONNECTIONS, HOST, SKIP_ENV, TIMES_ENV, Instances, lanes, server
from bench.loadgen import run_closed


@dataclass
class ServerTimes:
    """What the server timed from its first counted advance to its last (seconds)."""

    advances: int = 0
    advance_wall: float = 0.0
    advance_cpu: float = 0.0
    verifies: int = 0
    verify_cpu: float = 0.0
    window_wall: float = 0.0  # first counted advance's start to the last one's end
    window_cpu: float = 0.0  # the whole process's CPU time over that window (every thread)


def instrument(path: str, skip: int) -> None:
    """In the server process, before it serves: time Funnel.advance and auth.verify; write ServerTimes at exit."""
    from engine import auth
    from engine.instances import Funnel

    times, seen, lock = ServerTimes(), [0], threading.Lock()  # the calls run in the thread pool, several at once
    marks: dict[str, float] = {}

    def advance(original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with lock:
                seen[0] += 1
                counted = seen[0] > skip
                if counted and not marks:
                    marks["wall"], marks["cpu"] = time.perf_counter(), time.process_time()
            wall, cpu = time.perf_counter(), time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                if counted:
                    with lock:
                        times.advances += 1
                        times.advance_wall += time.perf_counter() - wall
                        times.advance_cpu += time.thread_time() - cpu
                        times.window_wall = time.perf_counter() - marks["wall"]
                        times.window_cpu = time.process_time() - marks["cpu"]
        return timed

    def verify(original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            counted = seen[0] >= skip  # the last warm-up advance has started: its requests' token checks are done
            cpu = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                if counted:
                    with lock:
                        times.verifies += 1
                        times.verify_cpu += time.thread_time() - cpu
        return timed

    Funnel.advance = advance(Funnel.advance)  # type: ignore[method-assign]
    auth.verify = verify(auth.verify)
    atexit.register(lambda: Path(path).write_text(json.dumps(times.__dict__)))


def profile(database_url: str, workdir: Path, *, connections: int, instances: int) -> dict[str, Any]:
    """Serve, warm up, run one closed loop; the client's figures and what the server timed."""
    source = Instances(database_url)
    times_path = workdir / "server-times.json"
    headers = {"Authorization": f"Bearer {source.token}"}
    warm = source.start(2 * connections)
    os.environ[TIMES_ENV], os.environ[SKIP_ENV] = str(times_path), str(len(warm) * len(STAGE_DATA))
    try:
        with (ProcessPoolExecutor(1, mp_context=get_context("spawn")) as loadgen,
              server("real", database_url, workdir, ticker=True) as port):
            loadgen.submit(run_closed, HOST, port, headers, lanes(warm, connections)).result()
            ids = source.start(instances)
            got = loadgen.submit(run_closed, HOST, port, headers, lanes(ids, connections)).result()
    finally:
        os.environ.pop(TIMES_ENV, None)
        os.environ.pop(SKIP_ENV, None)
        source.close()
    if not times_path.exists():
        raise RuntimeError(f"the server wrote no timings (it did not exit cleanly?); see the logs in {workdir}")
    return {"requests": got.sent, "ok": got.ok, "errors": got.errors, "seconds": got.seconds,
            "server": ServerTimes(**json.loads(times_path.read_text())).__dict__}


def report(found: dict[str, Any], *, kind: str, connections: int) -> str:
    t = ServerTimes(**found["server"])
    n = max(t.advances, 1)
    cpu = t.window_cpu / n * 1000
    adv_wall, adv_cpu = t.advance_wall / n * 1000, t.advance_cpu / n * 1000
    verify = t.verify_cpu / max(t.verifies, 1) * 1000
    rest = cpu - adv_cpu - verify
    rate = found["ok"] / found["seconds"] if found["seconds"] else 0.0
    lines = [
        f"{kind}: {found['ok']:,} advances over HTTP, {connections} connections: {rate:.1f}/s, "
        f"{found['errors']} errors; the server timed {t.advances:,}",
        f"{'server, per request':<34} {'ms':>8} {'share':>7}",
        f"{'CPU (all threads)':<34} {cpu:>8.3f} {1:>7.0%}",
        f"{'  engine advance (CPU)':<34} {adv_cpu:>8.3f} {adv_cpu / cpu if cpu else 0:>7.0%}",
        f"{'  token check (CPU)':<34} {verify:>8.3f} {verify / cpu if cpu else 0:>7.0%}",
        f"{'  rest: HTTP, FastAPI, reply, ticker':<34} {rest:>8.3f} {rest / cpu if cpu else 0:>7.0%}",
        f"{'engine advance (wall)':<34} {adv_wall:>8.3f}  (with {connections} in flight: waits for the others too)",
        f"{'wall per request at this rate':<34} {t.window_wall / n * 1000:>8.3f}",
        f"CPU share of the server's wall time: {t.window_cpu / t.window_wall if t.window_wall else 0:.2f} "
        "(near 1: CPU-bound, more connections will not help)",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description="Where the server's time per HTTP advance goes (see the docstring)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument("--instances", type=int, default=400,
                        help=f"instances in the timed loop (x{len(STAGE_DATA)} advances)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        found = profile(url, Path(tmp), connections=args.connections, instances=args.instances)
    print(report(found, kind=args.db, connections=args.connections))


if __name__ == "__main__":
    main()

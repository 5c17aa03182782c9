"""Scenario 2: advances over HTTP against a real uvicorn process, beside a trivial FastAPI app served the same way.

Three processes on loopback: the server (one uvicorn process, one event loop, FastAPI's thread pool for the sync
routes), the load generator (bench.loadgen, its own process) and this one, which prepares the database and
instances (untimed) and starts and stops the others. Per database and per app:

1. warm-up: a few instances through every stage, not counted; its rate sizes the closed loop;
2. closed loop (about Sizes.closed_seconds long): CONNECTIONS connections send requests back to back;
   advances/s counts 2xx replies, and any other status (or a broken connection, status 0) is an error. With
   errors it is run again on fresh instances with half the connections, so the figure is the best error-free
   rate found (every attempt, with its statuses, is in Row.extra);
3. open loop at half that rate on fresh instances: requests start on schedule whether or not the previous reply
   came, and latency is taken from the scheduled start, so queueing counts (no coordinated omission).

Lanes: each connection owns its own instances and advances them stage by stage (stage 1 of all its instances,
then stage 2, ...), and a connection sends its next request only after the previous reply, so no two requests
in flight ever touch the same instance (a 409 would be a real error, not a planning artefact). The baseline gets
the very same request lists (paths, bodies, bearer header) on the very same uvicorn options.

The real app is served as `funnel serve` serves it (open_funnel, the ticker beside it, uvicorn in-process), but
with the access log off, like the baseline. Token: an admin user's, issued in-process (admins may advance any
instance; a rep would pass the same permission check after one more lookup).

`python -m bench.http_advance [--quick] [--db sqlite|postgresql|both] [--no-ticker] [--connections N] [--verbose]`
prints the table (--verbose adds each row's extra figures).
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from bench.common import Row, checkpoint, checkpoints_since, database, format_table, percentile
from bench.engine_advance import STAGE_DATA
from bench.loadgen import LoadResult, Request, run_closed, run_paced
from engine.settings import REPO_ROOT

HOST = "127.0.0.1"
CONNECTIONS = 8  # concurrent keep-alive connections (lanes) of the load generator
WORKFLOW = "sales_funnel"
LOGIN = "bench"
WORKERS = 1  # uvicorn worker processes per app (--workers); `funnel serve`'s default (FUNNEL_WORKERS)
# bench.profile_http asks the server process (1 worker) to time its advances: where to write them, how many to skip
TIMES_ENV, SKIP_ENV = "BENCH_SERVER_TIMES", "BENCH_SERVER_SKIP"
CORES = 2  # the goals' machine: `./dev bench` also serves both apps with this many workers
# httptools + uvloop (pinned in pyproject), no access log; both apps alike
UVICORN_OPTIONS: dict[str, Any] = {"log_level": "warning", "access_log": False}


@dataclass(frozen=True)
class Sizes:
    warmup_instances: int  # per app, advanced through every stage before timing (also gives a first rate)
    closed_seconds: float  # closed loop: about this long at the warm-up rate (sized in instances x stages)
    paced_seconds: float  # open loop: how long the schedule runs at half the closed-loop rate ...
    paced_min_requests: int  # ... but at least this many requests, so that p99 is not just the maximum
    max_instances: int = 5000  # per closed-loop attempt; each costs an untimed in-process start


QUICK = Sizes(warmup_instances=2 * CONNECTIONS, closed_seconds=4.0, paced_seconds=3.0, paced_min_requests=200)
FULL = Sizes(warmup_instances=8 * CONNECTIONS, closed_seconds=15.0, paced_seconds=10.0, paced_min_requests=1000)


@dataclass
class Measured:
    """One app on one database: the error-free closed-loop rate and the open-loop latency at half of it."""

    rate: float
    p50_ms: float
    p99_ms: float
    paced_rate: float
    closed: list[dict[str, Any]]
    paced: dict[str, Any]
    warmup: dict[str, Any]


# ---------------------------------------------------------------- the server process


def serve(app_name: str, port: int, *, ticker: bool, workers: int) -> None:
    """Run one app under uvicorn (`workers` processes) until SIGINT/SIGTERM (the entry of the server subprocess)."""
    if app_name == "trivial":
        import uvicorn

        # its lifespan tunes the GC as api.serving's does: served exactly like ours
        uvicorn.run("bench.trivial_app:app", host=HOST, port=port, workers=workers, **UVICORN_OPTIONS)
        return
    from api import serving  # what `funnel serve` runs after its set-up (done by Instances, in the bench process)

    if os.environ.get(TIMES_ENV) and workers == 1:  # bench.profile_http times inside this process
        from bench import profile_http

        profile_http.instrument(os.environ[TIMES_ENV], int(os.environ.get(SKIP_ENV, "0")))
    serving.serve(host=HOST, port=port, workers=workers, ticker=ticker, **UVICORN_OPTIONS)


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    """Any HTTP reply to GET /health (the trivial app says 404) means the server is up."""
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/health")
        conn.getresponse().read()
        return True
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


@contextmanager
def server(app_name: str, database_url: str, workdir: Path, *, ticker: bool, workers: int = WORKERS) -> Iterator[int]:
    """A uvicorn subprocess serving `app_name` on a free loopback port; stopped (SIGINT, then kill) on exit."""
    port = free_port()
    env = {**os.environ, "FUNNEL_DATABASE_URL": database_url, "PYTHONPATH": str(REPO_ROOT)}
    log_path = workdir / f"serve-{app_name}-{port}.log"
    cmd = [sys.executable, "-m", "bench.http_advance", "--serve", app_name, "--port", str(port),
           "--workers", str(workers)]
    if not ticker:
        cmd.append("--no-ticker")
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603 (our argv)
        try:
            deadline = time.monotonic() + 60
            while not _answers(port):
                if proc.poll() is not None:
                    raise RuntimeError(f"the {app_name} server exited ({proc.returncode}):\n{log_path.read_text()}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the {app_name} server did not answer in 60 s:\n{log_path.read_text()}")
                time.sleep(0.1)
            yield port
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
    if proc.returncode not in (0, -signal.SIGINT):
        print(f"warning: {app_name} server exited with {proc.returncode}; log: {log_path}", file=sys.stderr)


# ---------------------------------------------------------------- instances and request lanes


class Instances:
    """Creates sales_funnel instances in this process (untimed), and the admin token the load generator sends."""

    def __init__(self, database_url: str) -> None:
        from engine import auth, people
        from engine.bootstrap import open_funnel
        from engine.settings import Settings

        self.funnel = open_funnel(Settings(database_url=database_url))
        people.create_user(self.funnel.engine, LOGIN, display_name="Benchmark", email="bench@example.com",
                           roles=("admin",))
        self.token = auth.issue(self.funnel.engine, LOGIN, actor="bench", now=self.funnel.clock(),
                                label="bench").token

    def start(self, n: int) -> list[int]:
        return [self.funnel.start(WORKFLOW, {}, actor=LOGIN).id for _ in range(n)]

    def close(self) -> None:
        self.funnel.engine.dispose()


class Synthetic:
    """The baseline's ids: the trivial app echoes, so any distinct numbers do."""

    def __init__(self) -> None:
        self.token = "fnl_0000000000000000_" + "x" * 43  # the same header size as a real token
        self.next = 1

    def start(self, n: int) -> list[int]:
        ids = list(range(self.next, self.next + n))
        self.next += n
        return ids

    def close(self) -> None:
        pass


def lanes(ids: list[int], n_lanes: int) -> list[list[Request]]:
    """Lane k owns ids[k::n_lanes] and advances them stage-major: every id once per stage, in stage order."""
    out: list[list[Request]] = []
    for k in range(n_lanes):
        own = ids[k::n_lanes]
        out.append([("POST", f"/api/instances/{i}/advance", {"data": data}) for data in STAGE_DATA for i in own])
    return [lane for lane in out if lane]


def _summary(result: LoadResult) -> dict[str, Any]:
    return {"requests": result.sent, "ok": result.ok, "errors": result.errors, "seconds": round(result.seconds, 3),
            "statuses": {str(k): v for k, v in sorted(result.statuses.items())}}


# ---------------------------------------------------------------- one app on one database


def measure(app_name: str, database_url: str, workdir: Path, sizes: Sizes, loadgen: Executor, *,
            ticker: bool, connections: int = CONNECTIONS, workers: int = WORKERS) -> Measured:
    source: Instances | Synthetic = Instances(database_url) if app_name == "real" else Synthetic()
    stages = len(STAGE_DATA)
    try:
        headers = {"Authorization": f"Bearer {source.token}"}
        warm_ids = source.start(sizes.warmup_instances)
        with server(app_name, database_url, workdir, ticker=ticker, workers=workers) as port:
            warm = loadgen.submit(run_closed, HOST, port, headers, lanes(warm_ids, connections)).result()
            # instances for each run are started here, between runs, while the server is idle (untimed)
            estimate = warm.ok / warm.seconds if warm.seconds else 0.0
            n_closed = min(sizes.max_instances, max(4 * connections, round(estimate * sizes.closed_seconds / stages)))
            attempts: list[dict[str, Any]] = []
            rate, width = 0.0, connections
            while True:
                got = loadgen.submit(run_closed, HOST, port, headers, lanes(source.start(n_closed), width)).result()
                attempts.append({"connections": width, **_summary(got), "rate": round(got.ok / got.seconds, 1)})
                if got.errors == 0:
                    rate = got.ok / got.seconds
                    break
                if width == 1:
                    break  # no error-free rate: reported as 0
                width = max(1, width // 2)
            half, paced, checkpoints = rate / 2, LoadResult(), None
            if rate > 0:  # with no error-free rate there is no half load to measure at
                requests = max(sizes.paced_min_requests, round(half * sizes.paced_seconds))
                n_paced = min(sizes.max_instances, max(connections, -(-requests // stages)))
                paced_lanes = lanes(source.start(n_paced), connections)
                flushed = checkpoint(database_url)  # the closed runs' writes are flushed before the latencies
                paced = loadgen.submit(run_paced, HOST, port, headers, paced_lanes, half).result()
                checkpoints = checkpoints_since(database_url, flushed)
    finally:
        source.close()
    spread = {f"p{p}_ms": round(percentile(paced.latencies_ms, p), 2) for p in (90, 99.9, 100)}
    return Measured(rate=rate, p50_ms=percentile(paced.latencies_ms, 50), p99_ms=percentile(paced.latencies_ms, 99),
                    paced_rate=paced.sent / paced.seconds if paced.seconds else 0.0, closed=attempts,
                    paced={**_summary(paced), "offered_rate": round(half, 1), **spread, "checkpoints": checkpoints},
                    warmup={**_summary(warm), "rate": round(estimate, 1)})


def rows_for(kind: str, base: Measured, ours: Measured, *, ticker: bool, connections: int,
             workers: int = WORKERS) -> list[Row]:
    errors = sum(a["errors"] for a in ours.closed) + ours.paced["errors"] + ours.warmup["errors"]
    base_errors = sum(a["errors"] for a in base.closed) + base.paced["errors"] + base.warmup["errors"]
    common = {"connections": connections, "ticker": ticker, "workers": workers,
              "server": f"uvicorn, {workers} worker process(es), httptools + uvloop, steady_gc, no access log"}
    served = "" if workers == WORKERS else f", {workers} workers"
    throughput = Row(
        f"http advance, {kind}{served}: throughput", "advances/s", "trivial app", base.rate, ours.rate,
        ">= 1,000/s, zero errors",
        extra={**common, "errors": errors, "baseline_errors": base_errors, "closed_attempts": ours.closed,
               "baseline_closed_attempts": base.closed, "warmup": ours.warmup})
    latency = Row(
        f"http advance, {kind}{served}: p99 at half load", "ms", "trivial app", base.p99_ms, ours.p99_ms,
        "p99 <= 10 ms", higher_is_better=False,
        extra={**common, "p50_ms": round(ours.p50_ms, 2), "baseline_p50_ms": round(base.p50_ms, 2),
               "achieved_rate": round(ours.paced_rate, 1), "baseline_achieved_rate": round(base.paced_rate, 1),
               "paced": ours.paced, "baseline_paced": base.paced})
    return [throughput, latency]


def run(workdir: Path, *, quick: bool, kinds: tuple[str, ...] = ("sqlite", "postgresql"),
        ticker: bool = True, connections: int = CONNECTIONS, workers: int = WORKERS) -> list[Row]:
    sizes = QUICK if quick else FULL
    rows: list[Row] = []
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as loadgen:
        for kind in kinds:
            with database(kind, workdir) as url:
                base, ours = (measure(app, url, workdir, sizes, loadgen, ticker=ticker, connections=connections,
                                      workers=workers) for app in ("trivial", "real"))
            rows.extend(rows_for(kind, base, ours, ticker=ticker, connections=connections, workers=workers))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="Scenario 2: HTTP advance against a trivial FastAPI app")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--no-ticker", dest="ticker", action="store_false",
                        help="serve without the background ticker (funnel serve runs it by default)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS, help="load-generator connections")
    parser.add_argument("--workers", type=int, default=WORKERS, help="uvicorn worker processes, both apps alike")
    parser.add_argument("--verbose", action="store_true", help="also print each row's extra figures")
    parser.add_argument("--serve", choices=("real", "trivial"), help=argparse.SUPPRESS)  # the server subprocess
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.port, ticker=args.ticker, workers=args.workers)
        return
    kinds = ("sqlite", "postgresql") if args.db == "both" else (args.db,)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(Path(tmp), quick=args.quick, kinds=kinds, ticker=args.ticker, connections=args.connections,
                   workers=args.workers)
    print(format_table(rows))
    if args.verbose:
        for r in rows:
            print(f"\n{r.scenario}: {r.extra}")
    print(f"\n({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()

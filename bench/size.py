"""Scenario 4: size - memory of a service process, database size, and loading an instance that is not cached.

Database: `bench.seed` - 100,000 open sales opportunities and 1,000,000 open SLA deadlines (quick:
5,000 / 50,000), on SQLite and on PostgreSQL.

(a) Resident memory of one service process: the real service (`funnel serve`: uvicorn with the real
    app and the embedded ticker, FUNNEL_DATABASE_URL set, default FUNNEL_WORKFLOW_CACHE_SIZE) is
    started, then touched over HTTP with an admin token: GET of many instances (detail: data, tasks,
    history, SLA clocks), then an advance of more instances than the workflow cache holds, so the
    bounded cache is full. VmRSS (and the peak VmHWM) from /proc/<pid>/status. Baseline: the same
    process freshly started, nothing touched; the trivial FastAPI app served by uvicorn is in `extra`.
(b) Database size right after seeding: SQLite file + WAL after a TRUNCATE checkpoint; PostgreSQL the
    sum of pg_total_relation_size (tables, indexes, TOAST) over the schema. Baseline (floor): the
    bare minimum any engine stores for the same content - each instance's business data (id, data)
    and one (id, instance id, due_at) row per open deadline, primary keys only - built from our rows
    with INSERT ... SELECT (a separate SQLite file; tables in the schema on PostgreSQL). Per-table
    bytes per instance are in `extra`.
(c) Stored runtime state per instance: the average stored size of `instance.state` (deflated JSON,
    engine.models.types.PackedJSON; PostgreSQL: pg_column_size; the JSON's own length is in `extra`)
    against the naive full JSON (SpiffWorkflow's serializer, spec included) of the same workflow.
(d) Time to load an instance that is not cached: `Funnel._load` (what every change does first: read
    the row, restore the workflow from the state without its spec) of random never-touched instances
    in a fresh process-level Funnel, p50 (p99 in `extra`); baseline: the naive way - read the full
    JSON row and `SERIALIZER.deserialize_json` it - measured on the same database kind.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from bench.common import Row, database, format_table, percentile
from bench.loadgen import LoadResult, Request, run_closed
from bench.seed import Seeder, describe, seed
from engine import auth
from engine.bootstrap import open_funnel
from engine.models import Instance
from engine.models.types import unpack
from engine.settings import Settings
from engine.spiff import SERIALIZER, Workflow

MIB = 1024 * 1024
TABLES = ("instance", "human_task", "audit_event", "sla_clock", "sla_clock_event", "sla_due")


@dataclass(frozen=True)
class Sizes:
    instances: int
    deadlines: int
    gets: int  # instances read over HTTP
    advances: int  # instances advanced over HTTP (more than the workflow cache holds)
    loads: int  # uncached loads timed
    lanes: int = 4

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(instances=5_000, deadlines=50_000, gets=1_500, advances=600, loads=300)
        return cls(instances=100_000, deadlines=1_000_000, gets=10_000, advances=2_000, loads=1_000)


# ---------------------------------------------------------------- the service process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def rss(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak) of a process, in MiB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            out[name] = int(value.split()[0]) * 1024 / MIB
    return out


@contextmanager
def serve(argv: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the body ends; wait until it answers on `port`; never leave it behind."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,  # noqa: S603
                                preexec_fn=_die_with_parent)
        try:
            _wait_http(proc, port, log)
            yield proc
        finally:
            _stop(proc)


def _die_with_parent() -> None:
    """In the child (Linux): SIGTERM when the bench process dies, so even a killed bench leaves no server behind."""
    with suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG


def _wait_http(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited ({proc.returncode}): {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/openapi.json", timeout=5):
                return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not answer within {timeout:.0f} s: {log.read_text()[-2000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _lanes(requests: list[Request], lanes: int) -> list[list[Request]]:
    return [requests[k::lanes] for k in range(lanes)]


def _load_summary(result: LoadResult) -> dict[str, Any]:
    return {"requests": result.sent, "ok": result.ok, "errors": result.errors, "statuses": result.statuses,
            "p50_ms": round(percentile(result.latencies_ms, 50), 1),
            "p99_ms": round(percentile(result.latencies_ms, 99), 1),
            "per_s": round(result.sent / max(result.seconds, 1e-9))}


def service_memory(url: str, seeder: Seeder, workdir: Path, sizes: Sizes) -> dict[str, Any]:
    """RSS of `funnel serve` fresh, then after GETs and advances over HTTP; the trivial app for comparison."""
    token = auth.issue(seeder.engine, "admin", actor="bench", now=datetime.now(UTC), label="bench").token
    headers = {"Authorization": f"Bearer {token}"}
    first, last = seeder.clones
    rng = random.Random(4)
    ids = list(range(first, last + 1))
    rng.shuffle(ids)
    gets = ids[: sizes.gets]
    advances = ids[-sizes.advances:]
    funnel_bin = str(Path(sys.executable).parent / "funnel")
    port = _free_port()
    out: dict[str, Any] = {}
    argv = [funnel_bin, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with serve(argv, {"FUNNEL_DATABASE_URL": url}, port, workdir / "serve.log") as proc:
        time.sleep(1.0)
        out["fresh"] = rss(proc.pid)
        got = run_closed("127.0.0.1", port, headers,
                         _lanes([("GET", f"/api/instances/{i}", {}) for i in gets], sizes.lanes))
        out["after_gets"] = rss(proc.pid)
        moved = run_closed("127.0.0.1", port, headers,
                           _lanes([("POST", f"/api/instances/{i}/advance", {"data": {}}) for i in advances],
                                  sizes.lanes))
        out["after_advances"] = rss(proc.pid)
        out["gets"], out["advances"] = _load_summary(got), _load_summary(moved)
    port = _free_port()
    argv = [sys.executable, "-m", "uvicorn", "bench.trivial_app:app", "--host", "127.0.0.1", "--port", str(port),
            "--log-level", "warning"]
    with serve(argv, {}, port, workdir / "trivial.log") as proc:
        time.sleep(1.0)
        out["trivial_app"] = rss(proc.pid)
    return out


# ---------------------------------------------------------------- database size


def database_bytes(engine: sa.Engine) -> tuple[int, dict[str, int]]:
    """The whole database and each of the seeded tables (with its indexes and TOAST), in bytes."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT c.relname, pg_total_relation_size(c.oid) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = current_schema() AND c.relkind = 'r'")).all()
        tables = {str(name): int(size) for name, size in rows}
        return sum(tables.values()), {t: tables.get(t, 0) for t in TABLES}
    path = Path(engine.url.database or "")
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        per = _sqlite_table_bytes(conn)
    total = sum(p.stat().st_size for p in (path, Path(f"{path}-wal")) if p.exists())
    return total, per


def _sqlite_table_bytes(conn: sa.Connection) -> dict[str, int]:
    """Per-table bytes (table and its indexes) from the dbstat virtual table when SQLite has it; else empty."""
    try:
        rows = conn.exec_driver_sql(
            "SELECT coalesce(m.tbl_name, s.name), sum(s.pgsize) FROM dbstat s "
            "LEFT JOIN sqlite_master m ON m.name = s.name GROUP BY 1").all()
    except sa.exc.OperationalError:
        return {}
    found = {str(name): int(size) for name, size in rows}
    return {t: found.get(t, 0) for t in TABLES}


def floor_bytes(engine: sa.Engine, workdir: Path) -> int:
    """Business data per instance plus one (id, instance, due_at) row per open deadline, primary keys only."""
    create = ("CREATE TABLE {p}floor_instance (id BIGINT PRIMARY KEY, data TEXT NOT NULL)",
              "CREATE TABLE {p}floor_deadline (id BIGINT PRIMARY KEY, instance_id BIGINT NOT NULL, "
              "due_at TIMESTAMP NOT NULL)")
    fill = ("INSERT INTO {p}floor_instance SELECT id, CAST(data AS TEXT) FROM instance",
            "INSERT INTO {p}floor_deadline SELECT d.id, c.instance_id, d.due_at FROM sla_due d "
            "JOIN sla_clock c ON c.id = d.clock_id WHERE d.fired_at IS NULL")
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            for stmt in (*create, *fill):
                conn.execute(sa.text(stmt.format(p="")))
            size = int(conn.execute(sa.text(
                "SELECT pg_total_relation_size('floor_instance') + pg_total_relation_size('floor_deadline')"))
                .scalar() or 0)
            conn.execute(sa.text("DROP TABLE floor_instance, floor_deadline"))
        return size
    path = workdir / f"floor-{time.monotonic_ns()}.sqlite3"
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(f"ATTACH DATABASE '{path}' AS fl")
            for stmt in (*create, *fill):
                conn.exec_driver_sql(stmt.format(p="fl."))
            conn.commit()
            conn.exec_driver_sql("DETACH DATABASE fl")
        return path.stat().st_size
    finally:
        path.unlink(missing_ok=True)


def state_bytes(engine: sa.Engine, *, sample: int = 200) -> dict[str, float]:
    """Average stored size of instance.state and of the business data, and the state's JSON length (sampled)."""
    size = "pg_column_size" if engine.dialect.name == "postgresql" else "length"
    data_raw = "length(data::text)" if engine.dialect.name == "postgresql" else "length(data)"
    with engine.connect() as conn:
        row = conn.execute(sa.text(
            f"SELECT avg({size}(state)), avg({size}(data)), avg({data_raw}) FROM instance")).one()  # noqa: S608
        stored = conn.execute(sa.text("SELECT state FROM instance ORDER BY id LIMIT :n"), {"n": sample}).scalars()
        raw = [len(json.dumps(unpack(bytes(s)))) for s in stored]
    return {"state_stored": float(row[0]), "state_raw": sum(raw) / max(len(raw), 1), "data_stored": float(row[1]),
            "data_raw": float(row[2])}


# ---------------------------------------------------------------- loading an instance that is not cached


def load_times(url: str, seeder: Seeder, sizes: Sizes) -> tuple[list[float], list[float], int]:
    """ms per uncached Funnel._load of random instances; ms per naive read + full deserialize; naive bytes."""
    first, last = seeder.clones
    rng = random.Random(7)
    sample = rng.sample(range(first, last + 1), min(sizes.loads, last - first + 1))
    funnel = open_funnel(Settings(database_url=url), sync=False)
    try:
        funnel._load(first, None)  # the definition and connections are warm; the workflow cache is not used
        ours = []
        for instance_id in sample:
            t0 = time.perf_counter()
            funnel._load(instance_id, None)  # what every change does first: no cache entry for these
            ours.append((time.perf_counter() - t0) * 1000)
        with Session(funnel.engine) as session:
            row = session.exec(select(Instance).where(Instance.id == first)).one()
            definition = funnel.definitions.get(row.definition_version_id)
            naive_json = SERIALIZER.serialize_json(Workflow.restore(definition.specs, row.state).wf)
        count = min(500, len(sample))
        with funnel.engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE naive_state (id INTEGER PRIMARY KEY, state TEXT NOT NULL)"))
            conn.execute(sa.text("INSERT INTO naive_state (id, state) VALUES (:i, :s)"),
                         [{"i": i, "s": naive_json} for i in range(count)])
        naive = []
        for _ in range(len(sample)):
            i = rng.randrange(count)
            t0 = time.perf_counter()
            with funnel.engine.connect() as conn:
                text = conn.execute(sa.text("SELECT state FROM naive_state WHERE id = :i"), {"i": i}).scalar_one()
            SERIALIZER.deserialize_json(text)
            naive.append((time.perf_counter() - t0) * 1000)
        with funnel.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE naive_state"))
        return ours, naive, len(naive_json)
    finally:
        funnel.engine.dispose()


# ---------------------------------------------------------------- the scenario


def run_kind(kind: str, workdir: Path, sizes: Sizes) -> list[Row]:
    with database(kind, workdir) as url:
        seeder = seed(url, instances=sizes.instances, deadlines=sizes.deadlines)
        try:
            seeded = describe(seeder)
            n = seeder.report.instances
            total, per_table = database_bytes(seeder.engine)
            floor = floor_bytes(seeder.engine, workdir)
            state = state_bytes(seeder.engine)
            ours_ms, naive_ms, naive_bytes = load_times(url, seeder, sizes)
            memory = service_memory(url, seeder, workdir, sizes)
        finally:
            seeder.close()
    label = f"{n // 1000}k instances"
    fresh, touched = memory["fresh"]["VmRSS"], memory["after_advances"]["VmRSS"]
    return [
        Row(f"size, {kind}: RSS of a service process ({label})", "MiB", "fresh process", fresh, touched,
            "<= 512 MiB", higher_is_better=False,
            extra={**memory, "workflow_cache_size": Settings().workflow_cache_size, "seed": seeded}),
        Row(f"size, {kind}: database ({label}, {seeder.report.pending // 1000}k deadlines)", "MB", "floor",
            floor / 1e6, total / 1e6, "<= 500 MB", higher_is_better=False,
            extra={"bytes_per_instance": round(total / n), "floor_bytes_per_instance": round(floor / n),
                   "table_bytes_per_instance": {t: round(b / n) for t, b in per_table.items()}}),
        Row(f"size, {kind}: stored runtime state per instance", "bytes", "naive JSON", float(naive_bytes),
            state["state_stored"], "<= 4 KB", higher_is_better=False, extra={k: round(v) for k, v in state.items()}),
        Row(f"size, {kind}: load an uncached instance (p50)", "ms", "naive JSON", percentile(naive_ms, 50),
            percentile(ours_ms, 50), "figure (ratio >= 1)", higher_is_better=False,
            extra={"ours_p99_ms": round(percentile(ours_ms, 99), 2), "naive_p99_ms": round(percentile(naive_ms, 99), 2),
                   "samples": len(ours_ms)}),
    ]


def run(workdir: Path, *, quick: bool) -> list[Row]:
    sizes = Sizes.of(quick)
    rows: list[Row] = []
    for kind in ("sqlite", "postgresql"):
        rows.extend(run_kind(kind, workdir, sizes))
    return rows


def details(rows: list[Row]) -> str:
    """The figures behind the ratios: peaks, request counts and errors, per-instance bytes, p99s."""
    lines = []
    for r in rows:
        x = r.extra
        if "after_advances" in x:
            g, a = x["gets"], x["advances"]
            lines.append(f"{r.scenario}: fresh {x['fresh']['VmRSS']:.0f}, after {g['requests']} GETs "
                         f"{x['after_gets']['VmRSS']:.0f}, after {a['requests']} advances "
                         f"{x['after_advances']['VmRSS']:.0f} (peak {x['after_advances']['VmHWM']:.0f}) MiB; "
                         f"errors {g['errors']}+{a['errors']}; trivial app {x['trivial_app']['VmRSS']:.0f} MiB; "
                         f"GET p50 {g['p50_ms']} ms, advance p50 {a['p50_ms']} ms")
        elif "bytes_per_instance" in x:
            lines.append(f"{r.scenario}: {x['bytes_per_instance']:,} bytes/instance (floor "
                         f"{x['floor_bytes_per_instance']:,}); per table {x['table_bytes_per_instance']}")
        elif "state_raw" in x:
            lines.append(f"{r.scenario}: state stored {x['state_stored']:,}, raw {x['state_raw']:,}; "
                         f"business data {x['data_stored']:,} bytes")
        elif "ours_p99_ms" in x:
            lines.append(f"{r.scenario}: p99 ours {x['ours_p99_ms']} ms, naive {x['naive_p99_ms']} ms "
                         f"({x['samples']} samples)")
    return "\n".join(lines)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scenario 4: memory, database size, uncached loads")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", action="store_true", help="also print every row's extra figures")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (processes, databases) on kill too
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rows = run(Path(tmp), quick=args.quick)
    print(format_table(rows))
    print()
    print(details(rows))
    if args.json:
        print(json.dumps([r.to_dict() for r in rows], indent=1, default=str))
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

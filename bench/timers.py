"""Scenario 3: timers - lateness of SLA escalations at a steady 2,000 due/s and the time to queue a burst.

Database: `bench.seed` - 100,000 open sales opportunities and 1,000,000 open SLA deadlines (pending
`sla_due` rows, all hours to weeks ahead), then per phase the scheduled deadlines: a steady 2,000
due per second for `steady_s` seconds, then a burst of 100,000 all due at one instant (quick mode:
2,000 instances, 20,000 deadlines, 3 s steady, 5,000 burst). Each scheduled row belongs to a clock
whose ledger really reaches that level at its due time, so the ticker fires it (no "skipped").

Rounds: the steady phase runs `--rounds` times (3) per mode, the modes taking turns and the order swapped each
round, with fresh ticker processes (and their warm-up) per round; the burst runs once per mode, in round 1. The
round with the median p99 stands for a mode; every round's p99 is printed, and lost/duplicated are summed over all.

Tickers: spawned processes (1 on SQLite, 2 on PostgreSQL), each looping like api/scheduler.py does:
`nd = next_due(engine)`; if nothing is due yet sleep min(nd - now, 5 ms) (the served ticker sleeps until nd
within its interval; the same for rows all inserted beforehand, as here); else
`tick(funnel, now=datetime.now(UTC), worker_id=...)`, and again at once, without next_due, while a tick fires
something. Like the served process they run in, they tune the
garbage collector (api.app.steady_gc), and they have been ticking a while: an unmeasured warm-up of
1,000 rows at the steady rate runs first (for the floor too), so a deadline never pays process start-up.

Lateness = (when the row's outbox e-mail was committed) - (its due instant), an upper bound, so it is
never flattered. Two independent upper bounds on the commit are taken and the earlier one counts:
- an observer process polls the outbox every ~1 ms (`SELECT id, dedupe_key ... WHERE id > floor`,
  floor held back while lower ids are missing, so rows committed out of id order on PostgreSQL are
  not skipped). A row first seen by poll k was committed after poll k-1 began and before poll k
  ended: the end of poll k bounds it. Its window (end of poll k - start of poll k-1) is reported as
  `observe_err_p99_ms`: 1-3 ms on an idle machine, but 25-40 ms when the tickers saturate the 2
  cores and the observer waits for a core;
- the end of the tick that fired it: every ticker records, per tick, its `now` and the wall time
  at which tick() returned, after its commits. The row's `sla_due.fired_at` (`floor_due.fired_at`)
  is that tick's `now` and its `claimed_by` the worker, written in the transaction that queued the
  e-mails, so they name the tick. `fired_at` alone is not the commit: it is the claim time.
The figure from the observer alone is reported too (`p99_observer_ms`), and `early` counts rows
whose tick ended before the observer's window opened, which would mean the clocks disagree (0).
The observer's polling costs the tickers some CPU on the 2 shared cores, equally for both figures.

Baseline (floor), same database, same process count, same loop and cadence, same observer: the bare
minimum any ticker must do - a plain `floor_due` table (id, due_at, fired_at, claimed_by; 1,000,000
far-future rows plus the same schedule, a partial index on pending due_at) and per poll ONE
transaction that claims up to 500 due rows (`UPDATE ... RETURNING`, with `FOR UPDATE SKIP LOCKED`
on PostgreSQL) and inserts one outbox-like row per claimed row (`floor_outbox`, unique due_id); its
"next due" is an indexed min(due_at). No ledger re-check, no e-mail rendering, no audit entry: so
ours/floor is exactly the cost of what the engine adds on top of claiming and queueing.

Counted after each phase: lost = scheduled rows not fired, or fired with fewer e-mails than their
level's recipients, when the run ended (all expected e-mails seen, or no progress for a while past
the last due instant); duplicated = e-mails beyond a row's recipients plus audit entries beyond one
per (clock, level). `python -m bench.timers --profile` profiles one tick() on a burst (pyinstrument).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from bench.common import Row, checkpoint, checkpoints_since, database, format_table, percentile
from bench.seed import Scheduled, Seeder, describe, instant, seed, ts_sql, us
from engine.db import make_engine
from engine.models import AuditEvent
from engine.models.types import UTCDateTime, unpack

RATE = 2000  # due per second, steady
POLL_MAX_S = 0.005  # the tickers' longest sleep (both ours and the floor)
OBSERVE_S = 0.001  # the observer's pause between polls
FLOOR_BATCH = 500  # like engine.ticker.tick's default batch
ROUNDS = 3  # steady rounds per mode, taking turns: the median one counts
WARM_UP = 1_000  # rows (half a second at RATE) fired before the measured phases, by ours and the floor alike
SLA_KINDS = ("sla_warning", "sla_breach", "sla_escalation")
GOALS = {"sqlite": 1.0, "postgresql": 2.0}  # burst of 100,000 queued within (s)


@dataclass(frozen=True)
class Sizes:
    instances: int
    deadlines: int
    steady_s: float
    burst: int
    stall_s: float  # no new e-mail for this long after the last due instant: the run is over
    cap_s: float  # and never wait longer than this after it

    @classmethod
    def of(cls, quick: bool) -> Sizes:
        if quick:
            return cls(instances=2_000, deadlines=20_000, steady_s=3.0, burst=5_000, stall_s=10.0, cap_s=150.0)
        return cls(instances=100_000, deadlines=1_000_000, steady_s=25.0, burst=100_000, stall_s=20.0, cap_s=900.0)


@dataclass
class Phase:
    """What one phase (steady or burst, ours or floor) measured."""

    name: str
    scheduled: int
    lateness_ms: list[float] = field(default_factory=list)  # the earlier of the two upper bounds
    observer_ms: list[float] = field(default_factory=list)  # the observer's bound alone
    observe_err_ms: list[float] = field(default_factory=list)
    early: int = 0  # rows whose tick ended before the observer's window opened: the clocks disagree
    untimed: int = 0  # rows whose firing tick left no end time (only the observer bounds them)
    # kept until the tickers stop and say when each tick ended (settle): per scheduled row (target)
    due_us: dict[Any, int] = field(default_factory=dict, repr=False)
    seen: dict[Any, tuple[float, float]] = field(default_factory=dict, repr=False)  # the observer's window
    fired_by: dict[Any, tuple[str, int]] = field(default_factory=dict, repr=False)  # (claimed_by, fired_at us)
    lost: int = 0
    duplicated: int = 0
    unexpected: int = 0  # fired rows / e-mails that were not scheduled in this phase
    insert_s: float = 0.0
    lead_s: float = 0.0
    waited_s: float = 0.0
    spoiled: bool = False  # the insert was still running at the first due instant: lateness includes it
    checkpoints: int | None = None  # PostgreSQL checkpoints during the phase (bench.common.checkpoint)

    @property
    def complete_s(self) -> float:
        """From the (single) due instant until the last row committed: the burst figure."""
        return max(self.lateness_ms, default=0.0) / 1000

    def summary(self) -> dict[str, Any]:
        lat = self.lateness_ms
        return {"scheduled": self.scheduled, "p50_ms": round(percentile(lat, 50), 1),
                "p99_ms": round(percentile(lat, 99), 1), "max_ms": round(max(lat, default=0.0), 1),
                "p99_observer_ms": round(percentile(self.observer_ms, 99), 1), "early": self.early,
                "untimed": self.untimed,
                "lost": self.lost, "duplicated": self.duplicated, "unexpected": self.unexpected,
                "observe_err_p99_ms": round(percentile(self.observe_err_ms, 99), 1),
                "insert_s": round(self.insert_s, 2), "lead_s": round(self.lead_s, 2),
                "waited_s": round(self.waited_s, 1), "spoiled": self.spoiled, "checkpoints": self.checkpoints}


# ---------------------------------------------------------------- the floor's tables and work


def _floor_tables(kind: str) -> tuple[sa.MetaData, sa.Table, sa.Table]:
    from engine.models.types import UTCDateTime

    meta = sa.MetaData()
    big = sa.BigInteger().with_variant(sa.Integer(), "sqlite")  # SQLite: INTEGER PRIMARY KEY is the rowid
    due = sa.Table("floor_due", meta, sa.Column("id", big, primary_key=True),
                   sa.Column("due_at", UTCDateTime(), nullable=False), sa.Column("fired_at", UTCDateTime()),
                   sa.Column("claimed_by", sa.String(200)),
                   sa.Index("ix_floor_due_pending", "due_at", postgresql_where=sa.text("fired_at IS NULL"),
                            sqlite_where=sa.text("fired_at IS NULL")))
    outbox = sa.Table("floor_outbox", meta, sa.Column("id", big, primary_key=True),
                      sa.Column("due_id", sa.BigInteger(), nullable=False, unique=True),
                      sa.Column("created_at", UTCDateTime(), nullable=False))
    return meta, due, outbox


def create_floor(engine: Engine, background: int) -> None:
    """The floor's tables with `background` far-future pending rows (1..27 days ahead, like the deadlines)."""
    kind = engine.dialect.name
    meta, _, _ = _floor_tables(kind)
    meta.create_all(engine)
    base = us(datetime.now(UTC)) + 86_400_000_000
    with engine.begin() as conn:
        if kind == "postgresql":
            numbers = "generate_series(CAST(0 AS BIGINT), :n - 1) AS n(i)"
        else:
            numbers = ("(WITH RECURSIVE c(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM c WHERE i + 1 < :n) "
                       "SELECT i FROM c) n")
        micros = "(:base + (n.i % 27) * 86400000000 + (n.i * 7919) % 86400000000)"
        conn.execute(sa.text(f"INSERT INTO floor_due (due_at) SELECT {ts_sql(kind, micros)} FROM {numbers}"),  # noqa: S608
                     {"n": background, "base": base})
    if kind == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("ANALYZE floor_due"))


def floor_schedule(engine: Engine, dues_us: list[int]) -> tuple[int, int]:
    """Insert the scheduled floor rows; their id range."""
    _, due, _ = _floor_tables(engine.dialect.name)
    with engine.begin() as conn:
        before = int(conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM floor_due")).scalar() or 0)
        for k in range(0, len(dues_us), 20_000):
            conn.execute(sa.insert(due), [{"due_at": instant(d)} for d in dues_us[k:k + 20_000]])
        after = int(conn.execute(sa.text("SELECT max(id) FROM floor_due")).scalar() or 0)
    assert after - before == len(dues_us)
    return before + 1, after


class FloorTicker:
    """The floor: claim due rows and queue one outbox-like row each, one transaction per poll."""

    def __init__(self, engine: Engine, worker: str) -> None:
        self.engine, self.worker = engine, worker
        self.pg = engine.dialect.name == "postgresql"
        _, self.due, self.outbox = _floor_tables(engine.dialect.name)

    def next_due(self) -> datetime | None:
        with self.engine.connect() as conn:
            found = conn.execute(sa.select(sa.func.min(self.due.c.due_at)).where(self.due.c.fired_at.is_(None))
                                 ).scalar()
        if found is None:
            return None
        value = datetime.fromisoformat(found) if isinstance(found, str) else found
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value

    def tick(self, now: datetime) -> int:
        fired = 0
        while True:
            d = self.due.c
            # the same pick as engine.ticker_batch's claim: due time order only, the batch size in the SQL
            pick = (sa.select(d.id).where(d.fired_at.is_(None), d.due_at <= now).order_by(d.due_at)
                    .limit(sa.literal_column(str(FLOOR_BATCH))))
            if self.pg:
                pick = pick.with_for_update(skip_locked=True)
            with self.engine.begin() as conn:
                ids = list(conn.execute(sa.update(self.due).where(d.id.in_(pick.scalar_subquery()))
                                        .values(fired_at=now, claimed_by=self.worker).returning(d.id)).scalars())
                if ids:
                    conn.execute(sa.insert(self.outbox), [{"due_id": i, "created_at": now} for i in ids])
            fired += len(ids)
            if not ids:
                return fired


# ---------------------------------------------------------------- processes


def _ticker_main(url: str, worker: str, mode: str, stop: Event, ready: Event, stats_path: str,
                 profile_path: str | None) -> None:
    """One ticker process: the scheduler's loop around `next_due` and `tick` (ours), the floor's, or the what-if's
    (`set-based`: engine.ticker.next_due, then bench.set_based.fire_all in batches like tick's)."""
    from engine.bootstrap import open_funnel
    from engine.settings import Settings
    from engine.ticker import next_due, tick

    stats: dict[str, Any] = {"worker": worker, "ticks": 0, "tick_s": 0.0, "next_due_calls": 0, "next_due_s": 0.0,
                             "idle_s": 0.0, "fired": 0, "skipped": 0, "failed": 0, "failures": []}
    ends: list[tuple[int, float]] = []  # per tick that fired: its `now` (us, = fired_at) and when tick() returned
    if mode in ("ours", "set-based"):
        from bench.set_based import fire_all

        funnel = open_funnel(Settings(database_url=url), sync=False)
        engine = funnel.engine

        def find_next() -> datetime | None:
            return next_due(engine)

        def fire(now: datetime) -> int:
            if mode == "set-based":
                return fire_all(funnel, engine, now=now, worker=worker, batch=FLOOR_BATCH).levels
            result = tick(funnel, now=now, worker_id=worker)
            stats["skipped"] += result.skipped
            stats["failed"] += len(result.failed)
            stats["failures"] = (stats["failures"] + result.failed)[:5]
            return int(result.total)
    else:
        engine = make_engine(url)
        floor = FloorTicker(engine, worker)
        find_next, fire = floor.next_due, floor.tick
    find_next()  # warm up (connections, caches) before saying ready
    from api.app import steady_gc

    steady_gc()  # the ticker runs inside `funnel serve`, which tunes the collector like this (both modes alike)
    profiler = None
    if profile_path:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005)
    parent = os.getppid()
    ready.set()
    if profiler is not None:
        profiler.start()
    try:
        fired = 0
        while not stop.is_set() and os.getppid() == parent:  # never outlive the bench
            t1 = time.perf_counter()
            if not fired:  # after a tick that fired something, tick again at once (api/scheduler.py)
                t0 = t1
                nd = find_next()
                t1 = time.perf_counter()
                stats["next_due_calls"] += 1
                stats["next_due_s"] += t1 - t0
                now = datetime.now(UTC)
                if nd is None or nd > now:
                    wait = POLL_MAX_S if nd is None else min((nd - now).total_seconds(), POLL_MAX_S)
                    stop.wait(max(wait, 0.0))
                    stats["idle_s"] += time.perf_counter() - t1
                    continue
            at = datetime.now(UTC)
            fired = fire(at)
            if fired:
                ends.append((us(at), time.time()))  # after the tick's commits: an upper bound on each
            stats["fired"] += fired
            stats["ticks"] += 1
            stats["tick_s"] += time.perf_counter() - t1
    finally:
        if profiler is not None:
            profiler.stop()
            Path(profile_path or "").write_text(profiler.output_text(unicode=False, color=False, show_all=False))
        Path(stats_path).write_text(json.dumps({**stats, "tick_ends": ends}))
        engine.dispose()


def _observer_main(url: str, mode: str, stop: Event, ready: Event, seen: Synchronized[int], out_path: str) -> None:
    """Polls the outbox (or the floor's) and records, per new row, the window in which it was committed."""
    table, key = ("floor_outbox", "due_id") if mode == "floor" else ("outbox", "dedupe_key")
    engine = make_engine(url)
    records: list[tuple[Any, float, float]] = []
    known: set[int] = set()
    missing: dict[int, float] = {}
    with engine.connect() as conn:
        floor = int(conn.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar() or 0)  # noqa: S608
        conn.rollback()
        top = floor
        query = sa.text(f"SELECT id, {key} FROM {table} WHERE id > :floor")  # noqa: S608
        ready.set()
        prev_start = time.time()
        last_round = False
        parent = os.getppid()
        while True:
            if stop.is_set() or os.getppid() != parent:  # never outlive the bench
                last_round = True
            start = time.time()
            rows = conn.execute(query, {"floor": floor}).all()
            conn.rollback()  # end the read transaction: the next poll sees a new snapshot
            end = time.time()
            fresh = [(i, k) for i, k in rows if i not in known]
            for i, k in fresh:
                known.add(i)
                missing.pop(i, None)
                records.append((k, prev_start, end))
            if fresh:
                new_top = max(i for i, _ in fresh)
                for i in range(top + 1, new_top):
                    if i not in known:
                        missing.setdefault(i, end)
                top = max(top, new_top)
                with seen.get_lock():
                    seen.value += len(fresh)
            for i in [i for i, since in missing.items() if end - since > 3.0]:  # a gap, never committed
                del missing[i]
            floor = (min(missing) - 1) if missing else top
            prev_start = start
            if last_round:
                break
            time.sleep(OBSERVE_S)
    engine.dispose()
    Path(out_path).write_text(json.dumps(records))


@dataclass
class Observer:
    proc: SpawnProcess
    stop: Any
    seen: Any
    out: Path


@dataclass
class Workers:
    """The ticker processes of one (database, mode), and an observer per phase."""

    url: str
    mode: str
    count: int
    workdir: Path
    profile: bool = False
    ctx: Any = field(default_factory=lambda: mp.get_context("spawn"))
    tickers: list[SpawnProcess] = field(default_factory=list)
    tickers_stop: Any = None
    observer: Observer | None = None
    stats_paths: list[Path] = field(default_factory=list)
    profile_paths: list[Path] = field(default_factory=list)

    def start_tickers(self) -> None:
        self.tickers_stop = self.ctx.Event()
        readies = []
        for k in range(self.count):
            ready = self.ctx.Event()
            worker = f"bench-{self.mode}-{k}"
            stats = self.workdir / f"stats-{worker}-{time.monotonic_ns()}.json"
            prof = self.workdir / f"profile-{worker}-{time.monotonic_ns()}.txt" if self.profile else None
            proc = self.ctx.Process(target=_ticker_main, daemon=True,
                                    args=(self.url, worker, self.mode, self.tickers_stop, ready, str(stats),
                                          str(prof) if prof else None))
            proc.start()
            self.tickers.append(proc)
            self.stats_paths.append(stats)
            if prof:
                self.profile_paths.append(prof)
            readies.append(ready)
        _wait_ready(readies, self.tickers)

    def start_observer(self) -> None:
        stop, ready, seen = self.ctx.Event(), self.ctx.Event(), self.ctx.Value("q", 0)
        out = self.workdir / f"observed-{self.mode}-{time.monotonic_ns()}.json"
        proc = self.ctx.Process(target=_observer_main, daemon=True,
                                args=(self.url, self.mode, stop, ready, seen, str(out)))
        proc.start()
        self.observer = Observer(proc, stop, seen, out)
        _wait_ready([ready], [proc])

    def observed(self) -> int:
        return int(self.observer.seen.value) if self.observer is not None else 0

    def stop_observer(self) -> list[tuple[Any, float, float]]:
        """Stop the observer (it polls once more first); what it saw."""
        obs, self.observer = self.observer, None
        if obs is None:
            return []
        obs.stop.set()
        _reap([obs.proc])
        records = [(r[0], r[1], r[2]) for r in json.loads(obs.out.read_text())] if obs.out.exists() else []
        obs.out.unlink(missing_ok=True)
        return records

    def stop(self) -> list[dict[str, Any]]:
        """Stop everything; the tickers' own accounts of where their time went."""
        if self.tickers_stop is not None:
            self.tickers_stop.set()
        self.stop_observer()
        _reap(self.tickers)
        self.tickers = []
        return [json.loads(p.read_text()) for p in self.stats_paths if p.exists()]

    def profiles(self) -> list[str]:
        return [p.read_text() for p in self.profile_paths if p.exists()]


def _wait_ready(readies: list[Any], procs: list[SpawnProcess], timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    for ready in readies:
        while not ready.wait(0.2):
            if any(p.exitcode is not None for p in procs) or time.monotonic() > deadline:
                raise RuntimeError(f"a bench process did not start (exit codes {[p.exitcode for p in procs]})")


def _reap(procs: list[SpawnProcess], grace: float = 10.0) -> None:
    """Join every process; terminate (then kill) whatever is still running: no orphans."""
    for proc in procs:
        proc.join(grace)  # a ticker stops between ticks; one still inside a long tick() is terminated
        if proc.is_alive():
            proc.terminate()
            proc.join(5)
        if proc.is_alive():
            proc.kill()
            proc.join(5)


@contextmanager
def workers(url: str, mode: str, count: int, workdir: Path, *, profile: bool = False) -> Iterator[Workers]:
    w = Workers(url, mode, count, workdir, profile=profile)
    try:
        w.start_tickers()
        yield w
    finally:
        w.stop()


# ---------------------------------------------------------------- one phase


def _wait_done(w: Workers, expected: int, last_due_us: int, sizes: Sizes) -> float:
    """Until the observer saw `expected` rows, or (past the last due instant) nothing new came for stall_s."""
    started = time.monotonic()
    last_due = last_due_us / 1e6
    last_count, last_change = -1, time.time()
    while True:
        count, now = w.observed(), time.time()
        if count != last_count:
            last_count, last_change = count, now
        if count >= expected:
            time.sleep(0.3)  # let a stray extra (a duplicate) show up too
            return time.monotonic() - started
        if now > last_due and (now - max(last_change, last_due) > sizes.stall_s or now - last_due > sizes.cap_s):
            return time.monotonic() - started
        time.sleep(0.05)


def _lead(count: int, rate: float) -> float:
    """Seconds between fixing the due times and the first of them: the insert must be committed by then."""
    return 0.5 + 1.75 * count / rate


def _max_id(engine: Engine, table: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(f"SELECT coalesce(max(id), 0) FROM {table}")).scalar() or 0)  # noqa: S608


def ours_phase(name: str, seeder: Seeder, w: Workers, offsets_us: list[int], sizes: Sizes, rate: float) -> Phase:
    """Schedule escalation rows due at now + lead + offsets, let the tickers fire them, measure."""
    phase = Phase(name, len(offsets_us))
    engine = seeder.engine
    outbox_before, audit_before = _max_id(engine, "outbox"), _max_id(engine, "audit_event")
    w.start_observer()
    phase.lead_s = _lead(len(offsets_us), rate)
    base = us(datetime.now(UTC)) + round(phase.lead_s * 1e6)
    dues = [base + d for d in offsets_us]
    scheduled = seeder.schedule([instant(d) for d in dues])
    phase.insert_s = scheduled.seconds
    phase.spoiled = us(datetime.now(UTC)) > base
    seeder.check_ledger(scheduled, sample=20)
    phase.waited_s = _wait_done(w, sum(scheduled.expected_mail), max(dues), sizes)
    records = w.stop_observer()
    targets = _count_ours(phase, engine, scheduled, outbox_before, audit_before)
    _observed(phase, records, targets, "ours")
    return phase


def _count_ours(phase: Phase, engine: Engine, scheduled: Scheduled, outbox_before: int,
                audit_before: int) -> dict[Any, tuple[int, int]]:
    """Lost, duplicated and unexpected, from the database."""
    targets = scheduled.targets()
    lo, hi = scheduled.first_clock, scheduled.last_clock
    with engine.connect() as conn:
        for c, lv, worker, at in conn.execute(sa.text(
                "SELECT clock_id, level, claimed_by, fired_at FROM sla_due WHERE clock_id BETWEEN :lo AND :hi "
                "AND fired_at IS NOT NULL AND claimed_by IS NOT NULL").columns(fired_at=UTCDateTime()),
                {"lo": lo, "hi": hi}):
            phase.fired_by[(int(c), str(lv))] = (str(worker), us(at))
        fired = set(phase.fired_by)
        mails: dict[tuple[int, str], int] = defaultdict(int)
        for (key,) in conn.execute(sa.text("SELECT dedupe_key FROM outbox WHERE id > :o"), {"o": outbox_before}):
            parts = str(key).split(":")
            if parts[0] == "sla" and lo <= int(parts[1]) <= hi:
                mails[(int(parts[1]), parts[3])] += 1
            else:
                phase.unexpected += 1
        # audit changes are packed (engine.models.types.PackedJSON; the what-if's are plain): counted here
        audit = AuditEvent.__table__  # type: ignore[attr-defined]
        raw = sa.type_coerce(audit.c.changes, sa.LargeBinary)
        entries = Counter((c["sla"]["clock_id"], c["sla"]["level"]) for c in map(_document, conn.execute(
            sa.select(raw).where(audit.c.id > audit_before, audit.c.kind.in_(SLA_KINDS))).scalars()))
        audit_dups = sum(n - 1 for n in entries.values() if n > 1)
    phase.unexpected += len(fired - set(targets)) + sum(n for t, n in mails.items() if t not in targets)
    for target, (_, want) in targets.items():
        got = mails.get(target, 0)
        if target not in fired or got < want:
            phase.lost += 1
        phase.duplicated += max(0, got - want)
    phase.duplicated += audit_dups
    return dict(targets)


def _document(stored: bytes | memoryview) -> Any:
    """An audit entry's changes: packed by the engine, plain JSON from bench.set_based."""
    data = bytes(stored)
    return json.loads(data) if data[:1] == b"{" else unpack(data)


def _observed(phase: Phase, records: list[tuple[Any, float, float]], targets: dict[Any, tuple[int, int]],
              mode: str) -> None:
    """Per scheduled row: the observer's window on the commit of its last row in the outbox (settle() uses it)."""
    commit: dict[Any, tuple[float, float]] = {}
    for key, lo, hi in records:
        if mode == "ours":
            parts = str(key).split(":")
            if parts[0] != "sla":
                continue
            target: Any = (int(parts[1]), parts[3])
        else:
            target = int(key)
        if target in targets and (target not in commit or hi > commit[target][1]):
            commit[target] = (lo, hi)
    phase.seen = commit
    phase.due_us = {target: targets[target][0] for target in commit}


def settle(phase: Phase, tick_ends: dict[tuple[str, int], float]) -> None:
    """Lateness per row the observer saw: the earlier of two upper bounds on its commit, minus its due instant.

    `tick_ends` maps (worker, the tick's `now` in us) to when that tick() returned. A tick end before the
    observer's window opened cannot be (the row was not yet committed then): the clocks disagree, so such a row
    counts as `early` and keeps the observer's bound, which never flatters.
    """
    for target, (lo, hi) in phase.seen.items():
        due = phase.due_us[target]
        bound = hi
        end = tick_ends.get(phase.fired_by[target]) if target in phase.fired_by else None
        if end is None:
            phase.untimed += 1
        elif end < lo:
            phase.early += 1
        else:
            bound = min(hi, end)
        phase.lateness_ms.append((bound * 1e6 - due) / 1000)
        phase.observer_ms.append((hi * 1e6 - due) / 1000)
        phase.observe_err_ms.append((hi - lo) * 1000)


def floor_phase(name: str, engine: Engine, w: Workers, offsets_us: list[int], sizes: Sizes, rate: float) -> Phase:
    phase = Phase(name, len(offsets_us))
    outbox_before = _max_id(engine, "floor_outbox")
    w.start_observer()
    phase.lead_s = _lead(len(offsets_us), rate)
    base = us(datetime.now(UTC)) + round(phase.lead_s * 1e6)
    dues = [base + d for d in offsets_us]
    started = time.perf_counter()
    lo, hi = floor_schedule(engine, dues)
    phase.insert_s = time.perf_counter() - started
    phase.spoiled = us(datetime.now(UTC)) > base
    phase.waited_s = _wait_done(w, len(dues), max(dues), sizes)
    records = w.stop_observer()
    targets = {lo + k: (d, 1) for k, d in enumerate(dues)}
    with engine.connect() as conn:
        for i, worker, at in conn.execute(sa.text(
                "SELECT id, claimed_by, fired_at FROM floor_due WHERE id BETWEEN :lo AND :hi AND fired_at IS NOT NULL")
                .columns(fired_at=UTCDateTime()), {"lo": lo, "hi": hi}):
            phase.fired_by[int(i)] = (str(worker), us(at))
        fired = set(phase.fired_by)
        got: dict[int, int] = defaultdict(int)
        for (i,) in conn.execute(sa.text("SELECT due_id FROM floor_outbox WHERE id > :o"), {"o": outbox_before}):
            got[int(i)] += 1
    for i in targets:
        if i not in fired or got.get(i, 0) < 1:
            phase.lost += 1
        phase.duplicated += max(0, got.get(i, 0) - 1)
    phase.unexpected = sum(n for i, n in got.items() if i not in targets)
    _observed(phase, records, dict(targets), "floor")
    return phase


# ---------------------------------------------------------------- a database kind


def steady_offsets(sizes: Sizes) -> list[int]:
    return [round(k * 1e6 / RATE) for k in range(int(RATE * sizes.steady_s))]


def run_kind(kind: str, workdir: Path, sizes: Sizes, *, profile: bool = False,
             modes: tuple[str, ...] = ("floor", "ours"),
             rounds: int = ROUNDS) -> tuple[dict[str, Phase], dict[str, Any]]:
    """Seed one database, then `rounds` steady rounds of each mode (taking turns, the order swapped every round)
    and one burst each in the first round; the phases ("<mode> steady #r", "<mode> burst") and what else was
    seen. One steady phase is 25 s on a shared machine: a neighbour's minute of work lands on whichever mode
    runs then, so each is measured more than once, in alternation, and the median round counts (rows_for)."""
    procs = 1 if kind == "sqlite" else 2
    info: dict[str, Any] = {"processes": procs, "rounds": rounds}
    phases: dict[str, Phase] = {}
    with database(kind, workdir) as url:
        started = time.perf_counter()
        seeder = seed(url, instances=sizes.instances, deadlines=sizes.deadlines)
        try:
            info["seed"] = describe(seeder)
            t0 = time.perf_counter()
            create_floor(seeder.engine, sizes.deadlines)
            info["seed"]["floor_s"] = round(time.perf_counter() - t0, 1)
            info["seed"]["wall_s"] = round(time.perf_counter() - started, 1)
            for r in range(1, rounds + 1):
                for mode in modes if r % 2 else modes[::-1]:
                    _run_mode(url, seeder, mode, r, phases, info, workdir=workdir, sizes=sizes, procs=procs,
                              profile=profile and mode == "ours" and r == 1)
        finally:
            seeder.close()
    return phases, info


def _run_mode(url: str, seeder: Seeder, mode: str, round_: int, phases: dict[str, Phase], info: dict[str, Any], *,
              workdir: Path, sizes: Sizes, procs: int, profile: bool) -> None:
    """One mode's tickers for one round: an unmeasured warm-up, a steady phase, and in round 1 the burst."""
    steady, burst = f"{mode} steady #{round_}", f"{mode} burst"
    with workers(url, mode, procs, workdir, profile=profile) as w:
        rate = 4_000.0  # rows inserted per second, for the lead; measured from then on
        # a service has been ticking long before any given deadline: a short unmeasured warm-up
        # pays the first tick's one-time costs (definitions, calendars, statement caches)
        plan = [(f"{mode} warm-up", steady_offsets(sizes)[:WARM_UP]), (steady, steady_offsets(sizes))]
        if round_ == 1:
            plan.append((burst, [0] * sizes.burst))
        for name, offsets in plan:
            flushed = checkpoint(url)
            if mode != "floor":
                phase = ours_phase(name, seeder, w, offsets, sizes, rate)
            else:
                phase = floor_phase(name, seeder.engine, w, offsets, sizes, rate)
            phase.checkpoints = checkpoints_since(url, flushed)
            rate = max(1_000.0, phase.scheduled / max(phase.insert_s, 1e-3))
            phases[name] = phase
        del phases[f"{mode} warm-up"]  # unmeasured
        stats = w.stop()
        ends = {(st["worker"], int(at)): end for st in stats for at, end in st.pop("tick_ends", [])}
        for name, _ in plan[1:]:
            settle(phases[name], ends)
        if round_ == 1:
            info[f"{mode} tickers"] = stats
        if profile:
            info["profiles"] = w.profiles()


def steady_rounds(phases: dict[str, Phase], mode: str) -> list[Phase]:
    """The steady phases of `mode`, in round order."""
    found = [(int(key.rsplit("#", 1)[1]), phase) for key, phase in phases.items()
             if key.startswith(f"{mode} steady #")]
    return [phase for _, phase in sorted(found, key=lambda pair: pair[0])]


def median_round(rounds: list[Phase]) -> Phase:
    """The round whose p99 lateness is the median (the lower middle one of an even count): it stands for them."""
    ranked = sorted(rounds, key=lambda phase: percentile(phase.lateness_ms, 99))
    return ranked[(len(ranked) - 1) // 2]


def _steady_row(kind: str, label: str, mode: str, phases: dict[str, Phase], info: dict[str, Any], *,
                goal: str) -> Row:
    """Median steady round of `mode` against the floor's; every round's p99 and lost/doubled in `extra`."""
    ours_rounds, floor_rounds = steady_rounds(phases, mode), steady_rounds(phases, "floor")
    ours, floor = median_round(ours_rounds), median_round(floor_rounds)
    procs = info["processes"]
    rounds = [{"round": r, "ours_p99_ms": round(percentile(o.lateness_ms, 99), 1),
               "floor_p99_ms": round(percentile(f.lateness_ms, 99), 1)}
              for r, (o, f) in enumerate(zip(ours_rounds, floor_rounds, strict=True), start=1)]
    every = {"lost": sum(p.lost for p in ours_rounds), "duplicated": sum(p.duplicated for p in ours_rounds),
             "floor_lost": sum(p.lost for p in floor_rounds),
             "floor_duplicated": sum(p.duplicated for p in floor_rounds)}
    return Row(f"timers, {kind}: {label}", "ms", f"floor x{procs}", percentile(floor.lateness_ms, 99),
               percentile(ours.lateness_ms, 99), goal, higher_is_better=False,
               extra={"ours": ours.summary(), "floor": floor.summary(), "rounds": rounds, "all_rounds": every,
                      "seed": info.get("seed"), "ours_tickers": info.get(f"{mode} tickers"),
                      "floor_tickers": info.get("floor tickers")})


def rows_for(kind: str, phases: dict[str, Phase], info: dict[str, Any], sizes: Sizes) -> list[Row]:
    fb, ob = phases["floor burst"], phases["ours burst"]
    procs = info["processes"]
    label = f"{sizes.burst // 1000}k"
    steady = _steady_row(kind, "p99 lateness at 2,000/s", "ours", phases, info, goal="<= 25 ms")
    burst = Row(f"timers, {kind}: burst {label} queued", "s", f"floor x{procs}", fb.complete_s, ob.complete_s,
                f"<= {GOALS[kind]:g} s", higher_is_better=False,
                extra={"ours": ob.summary(), "floor": fb.summary(), "rate_per_s": round(ob.scheduled / max(
                    ob.complete_s, 1e-9))})
    rows = [steady, burst]
    if "set-based burst" in phases:  # --what-if: figures beside ours, no goal of their own
        wb = phases["set-based burst"]
        rows += [_steady_row(kind, "what-if set-based, p99 lateness", "set-based", phases, info,
                             goal="what-if (bench.set_based)"),
                 Row(f"timers, {kind}: what-if set-based, burst {label}", "s", f"floor x{procs}", fb.complete_s,
                     wb.complete_s, "what-if (bench.set_based)", higher_is_better=False,
                     extra={"ours": wb.summary(), "floor": fb.summary()})]
    return rows


def run(workdir: Path, *, quick: bool, kinds: tuple[str, ...] = ("sqlite", "postgresql"),
        progress: bool = False, what_if: bool = False, rounds: int = ROUNDS) -> list[Row]:
    sizes = Sizes.of(quick)
    rows: list[Row] = []
    modes = ("floor", "ours", "set-based") if what_if else ("floor", "ours")
    for kind in kinds:
        phases, info = run_kind(kind, workdir, sizes, modes=modes, rounds=rounds)
        found = rows_for(kind, phases, info, sizes)
        if progress:  # a long run shows each database's figures as soon as they exist
            print(f"{format_table(found)}\n{details(found)}\n", flush=True)
        rows.extend(found)
    return rows


def details(rows: list[Row]) -> str:
    """One line per row with the figures beside the ratio: p50/p99/max, lost, duplicated."""
    lines = []
    for r in rows:
        ours, floor = r.extra.get("ours", {}), r.extra.get("floor", {})
        lines.append(f"{r.scenario}: ours {_fig(ours)} | floor {_fig(floor)}")
        if r.extra.get("rounds"):
            every = r.extra["all_rounds"]
            lines.append("  rounds (p99 ms, ours/floor): "
                         + ", ".join(f"#{x['round']} {x['ours_p99_ms']}/{x['floor_p99_ms']}" for x in r.extra["rounds"])
                         + f"; every round: ours lost={every['lost']} dup={every['duplicated']}, "
                         f"floor lost={every['floor_lost']} dup={every['floor_duplicated']}")
        for mode in ("ours", "floor"):
            for st in r.extra.get(f"{mode}_tickers") or []:
                calls = max(1, st["next_due_calls"])
                lines.append(f"  {st['worker']} (round 1, burst included): {st['ticks']} ticks {st['tick_s']:.1f} s, "
                             f"{st['next_due_calls']} next_due {st['next_due_s']:.1f} s "
                             f"({st['next_due_s'] / calls * 1000:.1f} ms each), idle {st['idle_s']:.1f} s, "
                             f"fired {st['fired']}, skipped {st['skipped']}, failed {st['failed']}")
    return "\n".join(lines)


def _fig(s: dict[str, Any]) -> str:
    if not s:
        return "-"
    return (f"n={s['scheduled']} p50={s['p50_ms']} p99={s['p99_ms']} max={s['max_ms']} ms lost={s['lost']} "
            f"dup={s['duplicated']} unexpected={s['unexpected']} observer-only p99={s.get('p99_observer_ms')} ms "
            f"err99={s['observe_err_p99_ms']} ms early={s.get('early')} untimed={s.get('untimed')} "
            f"insert={s['insert_s']} s waited={s['waited_s']} s"
            + (f" server checkpoints during it={s['checkpoints']}" if s.get("checkpoints") else ""))


def profile_burst(kind: str, workdir: Path, burst: int, *, instances: int, deadlines: int) -> str:
    """pyinstrument over one tick() call that fires a burst of `burst` rows (in this process), seeded at size."""
    from pyinstrument import Profiler

    from engine.ticker import tick

    with database(kind, workdir) as url:
        seeder = seed(url, instances=instances, deadlines=deadlines)
        try:
            due = datetime.now(UTC) + timedelta(seconds=1)
            seeder.schedule([due] * burst)
            time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.01)
            profiler = Profiler(interval=0.0005)
            profiler.start()
            started = time.perf_counter()
            result = tick(seeder.funnel, now=datetime.now(UTC), worker_id="profile")
            elapsed = time.perf_counter() - started
            profiler.stop()
            head = (f"one tick() on {kind}: {result.total} fired, {result.emails} e-mails, {result.skipped} skipped, "
                    f"{len(result.failed)} failed in {elapsed:.2f} s ({result.total / elapsed:,.0f}/s)\n")
            return head + profiler.output_text(unicode=False, color=False, show_all=bool(os.environ.get("SHOW_ALL")))
        finally:
            seeder.close()


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scenario 3: timer lateness at 2,000/s and a burst, vs a floor")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--kind", choices=("sqlite", "postgresql"), help="only this database")
    parser.add_argument("--profile", choices=("sqlite", "postgresql"),
                        help="profile one tick() on a burst instead (seeded at full size unless --quick)")
    parser.add_argument("--burst", type=int, default=5_000, help="--profile: rows in the burst")
    parser.add_argument("--what-if", action="store_true",
                        help="also run bench.set_based's set-based firing through the same phases (figures only)")
    parser.add_argument("--rounds", type=int, default=ROUNDS,
                        help=f"steady rounds per mode, taking turns; the median one counts (default {ROUNDS})")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    signal.signal(signal.SIGTERM, _interrupt)  # clean up (processes, databases) on kill too
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            sizes = Sizes.of(args.quick)
            print(profile_burst(args.profile, Path(tmp), args.burst, instances=sizes.instances,
                                deadlines=sizes.deadlines))
            return
        started = time.perf_counter()
        kinds = (args.kind,) if args.kind else ("sqlite", "postgresql")
        rows = run(Path(tmp), quick=args.quick, kinds=kinds, progress=len(kinds) > 1, what_if=args.what_if,
                   rounds=args.rounds)
    print(format_table(rows))
    print()
    print(details(rows))
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()

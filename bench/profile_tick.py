"""`python -m bench.profile_tick`: where the time of one steady tick goes, statement by statement.

The timers scenario's steady phase has the ticker fire a few dozen levels a tick. This seeds a small database
(bench.seed), then `--ticks` times schedules `--levels` escalation levels due now and times one engine.ticker.tick
that fires them, with every statement it sends through SQLAlchemy timed (cursor events; the column-array inserts of
notifications.bulk go to the driver directly and count as "rest", like the commit). On PostgreSQL every wait for
the server is timed too, by what caused it (a statement, the commit, a pipeline's results). `--cprofile` adds the Python
functions that took longest (their own time), summed over the ticks. Use it to size a change to the tick, A/B against
another checkout: the machine's load moves these figures by 10-20%, so alternate runs.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import re
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import sqlalchemy as sa

from bench.common import database
from bench.seed import seed
from engine.ticker import tick


class StatementClock:
    """Seconds per statement (its kind and main table) while armed, from SQLAlchemy's cursor events; on PostgreSQL
    also the time spent waiting for the server (psycopg's `wait`: every round trip, commits and pipelines too)."""

    def __init__(self) -> None:
        self.armed = False
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.waits = 0.0
        self.wait_calls = 0
        # the waits by what caused them (wait_cause): a statement, the commit, a pipeline's sync ...
        self.wait_seconds: dict[str, float] = defaultdict(float)
        self.wait_counts: dict[str, int] = defaultdict(int)
        self._started: dict[int, float] = {}

    @contextmanager
    def listening(self, engine: sa.Engine) -> Iterator[StatementClock]:
        """Listen on `engine` (and patch psycopg's wait on PostgreSQL) until the block ends."""
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)
        restore = self._time_waits() if engine.dialect.name == "postgresql" else None
        try:
            yield self
        finally:
            sa.event.remove(engine, "before_cursor_execute", self._before)
            sa.event.remove(engine, "after_cursor_execute", self._after)
            if restore:
                restore()

    def _time_waits(self) -> Any:
        import psycopg

        original = psycopg.Connection.wait

        def wait(conn: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(conn, *args, **kwargs)
            finally:
                if self.armed:
                    spent, cause = time.perf_counter() - started, wait_cause(sys._getframe(1))
                    self.waits += spent
                    self.wait_calls += 1
                    self.wait_seconds[cause] += spent
                    self.wait_counts[cause] += 1

        psycopg.Connection.wait = wait  # type: ignore[method-assign,assignment]

        def restore() -> None:
            psycopg.Connection.wait = original  # type: ignore[method-assign]

        return restore

    def _before(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        self._started[id(cursor)] = time.perf_counter()

    def _after(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        started = self._started.pop(id(cursor), None)
        if self.armed and started is not None:
            name = statement_name(statement)
            self.seconds[name] += time.perf_counter() - started
            self.calls[name] += 1


# psycopg's method that waited -> what the report calls it (the autocommit and isolation waits are local checks)
_WAIT_CAUSES = {"execute": "statement", "executemany": "statement", "commit": "commit", "rollback": "rollback",
                "_fetch_pipeline": "pipeline results", "__enter__": "pipeline start", "__exit__": "pipeline end",
                "set_autocommit": "autocommit (local)", "set_isolation_level": "isolation (local)"}


def wait_cause(frame: FrameType | None) -> str:
    """What a psycopg wait was for: the name of the nearest psycopg method, among its callers, that it knows."""
    for _ in range(8):
        if frame is None:
            break
        if "psycopg" in frame.f_code.co_filename and frame.f_code.co_name in _WAIT_CAUSES:
            return _WAIT_CAUSES[frame.f_code.co_name]
        frame = frame.f_back
    return "other"


def statement_name(statement: str) -> str:
    """A statement's kind and main table: `SELECT sla_clock`, `UPDATE sla_due`, `INSERT outbox`, `WITH taken`."""
    words = statement.split()
    verb = words[0].upper() if words else "?"
    if verb == "WITH" and len(words) > 1:
        return f"WITH {words[1]}"
    outer = statement
    while (inner := re.sub(r"\([^()]*\)", "", outer)) != outer:  # drop subqueries: the main table is outside them
        outer = inner
    table = re.search(r"\b(?:FROM|UPDATE|INTO)\s+\"?(\w+)", outer, re.IGNORECASE)
    return f"{verb} {table.group(1) if table else ''}".strip()


@dataclass
class Profile:
    """What `profile` measured."""

    ticks: list[float] = field(default_factory=list)  # seconds, each tick
    fired: int = 0
    emails: int = 0
    clock: StatementClock = field(default_factory=StatementClock)
    python: cProfile.Profile | None = None  # with --cprofile: the Python of the ticks


def profile(url: str, *, levels: int, ticks: int, instances: int, deadlines: int, cprofile: bool = False) -> Profile:
    """Seed `url`, then `ticks` times schedule `levels` levels due now and time the tick that fires them."""
    seeder = seed(url, instances=instances, deadlines=deadlines)
    out = Profile()
    profiler = out.python = cProfile.Profile() if cprofile else None
    try:
        with out.clock.listening(seeder.engine) as clock:
            for _ in range(ticks):
                due = datetime.now(UTC) + timedelta(milliseconds=20)
                seeder.schedule([due] * levels)
                time.sleep(max(0.0, (due - datetime.now(UTC)).total_seconds()) + 0.001)
                clock.armed = True
                if profiler:
                    profiler.enable()
                started = time.perf_counter()
                result = tick(seeder.funnel, now=datetime.now(UTC), worker_id="profile")
                out.ticks.append(time.perf_counter() - started)
                if profiler:
                    profiler.disable()
                clock.armed = False
                out.fired, out.emails = out.fired + result.total, out.emails + result.emails
    finally:
        seeder.close()
    return out


def report(found: Profile, *, kind: str, levels: int, sort: str = "tottime") -> str:
    n, total = len(found.ticks), sum(found.ticks)
    clock = found.clock
    sql = sum(clock.seconds.values())
    lines = [f"{kind}: {n} ticks of {levels} levels ({found.fired:,} fired, {found.emails:,} e-mails): "
             f"median {statistics.median(found.ticks) * 1000:.2f} ms, mean {total / n * 1000:.2f} ms a tick "
             f"({total / max(found.fired, 1) * 1e6:.0f} us a level)",
             f"{'statement':<28} {'calls/tick':>10} {'ms/tick':>8} {'ms/call':>8}"]
    for name, seconds in sorted(clock.seconds.items(), key=lambda kv: -kv[1]):
        calls = clock.calls[name]
        lines.append(f"{name:<28} {calls / n:>10.2f} {seconds / n * 1000:>8.3f} {seconds / calls * 1000:>8.3f}")
    lines.append(f"{'(statements)':<28} {'':>10} {sql / n * 1000:>8.3f}")
    lines.append(f"{'(rest: Python, commits, arrays)':<28} {'':>10} {(total - sql) / n * 1000:>8.3f}")
    if clock.wait_calls:
        waits = f"{clock.wait_calls / n:>10.2f} {clock.waits / n * 1000:>8.3f}"
        lines.append(f"{'(waits for the server, all)':<28} {waits}")
        for cause, seconds in sorted(clock.wait_seconds.items(), key=lambda kv: -kv[1]):
            lines.append(f"{'  wait: ' + cause:<28} {clock.wait_counts[cause] / n:>10.2f} {seconds / n * 1000:>8.3f}")
    if found.python is not None:
        out = io.StringIO()
        pstats.Stats(found.python, stream=out).sort_stats(sort).print_stats(40)
        lines.append(out.getvalue())
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Time the statements and Python of steady ticks (see the docstring)")
    parser.add_argument("--kind", choices=("sqlite", "postgresql"), default="postgresql")
    parser.add_argument("--levels", type=int, default=28, help="levels due per tick")
    parser.add_argument("--ticks", type=int, default=80)
    parser.add_argument("--instances", type=int, default=2_000)
    parser.add_argument("--deadlines", type=int, default=20_000)
    parser.add_argument("--cprofile", action="store_true", help="also list the Python functions that took longest")
    parser.add_argument("--sort", default="tottime", help="--cprofile order: tottime (own time) or cumulative")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp, database(args.kind, Path(tmp)) as url:
        found = profile(url, levels=args.levels, ticks=args.ticks, instances=args.instances,
                        deadlines=args.deadlines, cprofile=args.cprofile)
    print(report(found, kind=args.kind, levels=args.levels, sort=args.sort))


if __name__ == "__main__":
    main()

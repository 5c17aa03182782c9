"""Shared benchmark plumbing: timing, result rows, databases to run on."""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@dataclass
class Row:
    """One scenario line: the baseline, our figure, and how they compare."""

    scenario: str
    unit: str
    baseline_name: str
    baseline: float
    ours: float
    goal: str
    higher_is_better: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """ours / baseline for rates, baseline / ours inverted for times: >1 means we are ahead."""
        if self.baseline == 0 or self.ours == 0:
            return 0.0
        return self.ours / self.baseline if self.higher_is_better else self.baseline / self.ours

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ratio": self.ratio}


def rate(n: int, fn: Callable[[], None]) -> float:
    """Operations per second of calling `fn` n times."""
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return n / (time.perf_counter() - start)


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh database URL: a SQLite file in `workdir` or a private PostgreSQL schema."""
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite3"
        try:
            yield f"sqlite:///{path}"
        finally:
            for suffix in ("", "-wal", "-shm", ".writelock"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    checkpoint(PG_URL)  # what earlier scenarios wrote is flushed before this one is measured
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def checkpoint(url: str) -> int | None:
    """Before a measured PostgreSQL phase: write out every dirty page now (`CHECKPOINT`); the checkpoints the
    server has made so far, for `checkpoints_since`. None on SQLite (its WAL checkpoints are the writer's own).

    Seeding a million rows fills the WAL past max_wal_size (1 GB here), and the server's catch-up checkpoints then
    land inside the next measured phase: the PostgreSQL timers' steady p99 read 64 ms measured straight after its
    seed, and 30-37 ms over three runs (no checkpoint during the phase) when flushed first, untimed.
    """
    if not url.startswith("postgresql"):
        return None
    with _server(url) as conn:
        earlier = _checkpoints(conn)
        conn.execute(sa.text("CHECKPOINT"))
        # the checkpointer reports its statistics just after it wakes us: wait (briefly) until ours is counted,
        # so it is not later mistaken for one made during the phase
        deadline = time.monotonic() + 2.0
        while (made := _checkpoints(conn)) <= earlier and time.monotonic() < deadline:
            time.sleep(0.01)
        return made


def checkpoints_since(url: str, before: int | None) -> int | None:
    """How many checkpoints the PostgreSQL server made since `checkpoint(url)` returned `before` (counted as each
    one ends): a measured phase that saw one may have been slowed by the server flushing, not by our code."""
    if before is None:
        return None
    with _server(url) as conn:
        return _checkpoints(conn) - before


@contextmanager
def _server(url: str) -> Iterator[sa.Connection]:
    """A short-lived connection outside any transaction (each statement reads fresh statistics), not pooled."""
    admin = sa.create_engine(url.split("?", 1)[0], poolclass=sa.pool.NullPool)
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            yield conn
    finally:
        admin.dispose()


def _checkpoints(conn: sa.Connection) -> int:
    """Checkpoints made so far, timed or requested (pg_stat_checkpointer from PostgreSQL 17, else pg_stat_bgwriter);
    our own `CHECKPOINT` counts too, so `checkpoint` reads it after its own."""
    exists = conn.execute(sa.text("SELECT to_regclass('pg_catalog.pg_stat_checkpointer') IS NOT NULL")).scalar()
    query = ("SELECT num_timed + num_requested FROM pg_stat_checkpointer" if exists
             else "SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")
    return int(conn.execute(sa.text(query)).scalar_one())


def format_table(rows: list[Row]) -> str:
    head = f"{'scenario':<44} {'baseline':>22} {'ours':>12} {'ratio':>7}  goal"
    lines = [head, "-" * len(head)]
    for r in rows:
        base = f"{r.baseline:,.1f} ({r.baseline_name})"
        lines.append(f"{r.scenario:<44} {base:>22} {r.ours:>12,.1f} {r.ratio:>7.2f}  {r.goal} [{r.unit}]")
    return "\n".join(lines)

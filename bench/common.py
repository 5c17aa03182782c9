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
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def format_table(rows: list[Row]) -> str:
    head = f"{'scenario':<44} {'baseline':>22} {'ours':>12} {'ratio':>7}  goal"
    lines = [head, "-" * len(head)]
    for r in rows:
        base = f"{r.baseline:,.1f} ({r.baseline_name})"
        lines.append(f"{r.scenario:<44} {base:>22} {r.ours:>12,.1f} {r.ratio:>7.2f}  {r.goal} [{r.unit}]")
    return "\n".join(lines)

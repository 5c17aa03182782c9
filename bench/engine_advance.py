"""Scenario 1: persisted engine advances against the floor (bare Spiff in memory) and the naive way."""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bench.common import Row, database, format_table
from engine.bootstrap import open_funnel
from engine.db import make_engine
from engine.models.types import pack
from engine.settings import REPO_ROOT, Settings
from engine.spiff import SERIALIZER, Workflow, parse_sources

STAGE_DATA: list[dict[str, Any]] = [
    {"customer_name": "Acme", "contact_name": "Dana", "need": "coil", "estimated_amount": 1000},
    {"budget_confirmed": True, "decision_maker": "CFO", "expected_close_date": "2027-01-01"},
    {"project_started": True, "requirements_documented": True, "competitors": []},
    {"proposal_submitted": True, "solution_review_passed": True, "final_amount": 900},
]
READY = 16  # SpiffWorkflow TaskState.READY; bench code stays off the library like the rest of the tree
FUNNEL_FILE = REPO_ROOT / "workflows" / "sales_funnel.bpmn"


def _specs() -> Any:
    return parse_sources({"sales_funnel.bpmn": FUNNEL_FILE.read_bytes()}, {})["sales_funnel"]


def floor(n_instances: int, *, commit_to: str | None = None) -> float:
    """Advances/s of bare SpiffWorkflow completing the same tasks in memory, nothing persisted.

    With `commit_to` (a database URL), each advance also commits a one-row UPDATE there, as durably as ours and
    the naive way commit (same engine settings): the least any persisted advance costs, which the floor leaves out.
    The table it counts in (`floor_commit`, one row per instance) stays, so a caller can check every commit landed.
    """
    specs = _specs()
    workflows = [Workflow.start(specs, {}) for _ in range(n_instances)]
    engine = make_engine(commit_to) if commit_to else None
    bump = sa.text("UPDATE floor_commit SET advances = advances + 1 WHERE id = :i")
    if engine is not None:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE floor_commit (id INTEGER PRIMARY KEY, advances INTEGER NOT NULL)"))
            conn.execute(sa.text("INSERT INTO floor_commit (id, advances) VALUES (:i, 0)"),
                         [{"i": i} for i in range(n_instances)])
    start = time.perf_counter()
    for i, wf in enumerate(workflows):
        for data in STAGE_DATA:
            task = next(iter(wf.wf.get_tasks(state=READY, manual=True)))  # bare Spiff, like the rest of the loop
            task.data.update(data)
            task.run()
            wf.wf.do_engine_steps()
            if engine is not None:
                with engine.begin() as conn:
                    conn.execute(bump, {"i": i})
    elapsed = time.perf_counter() - start
    if engine is not None:
        engine.dispose()
    return n_instances * len(STAGE_DATA) / elapsed


def naive(n_instances: int, url: str) -> float:
    """Advances/s of: read full JSON (spec included), deserialize, complete, serialize all, write."""
    specs = _specs()
    engine = make_engine(url)  # same connection settings as ours (WAL, durable commits on SQLite): a fair ratio
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE naive (id INTEGER PRIMARY KEY, state TEXT NOT NULL)"))
        for i in range(n_instances):
            wf = Workflow.start(specs, {})
            conn.execute(sa.text("INSERT INTO naive (id, state) VALUES (:i, :s)"),
                         {"i": i, "s": SERIALIZER.serialize_json(wf.wf)})
    start = time.perf_counter()
    for i in range(n_instances):
        for data in STAGE_DATA:
            with engine.begin() as conn:
                text = conn.execute(sa.text("SELECT state FROM naive WHERE id = :i"), {"i": i}).scalar_one()
                wf = SERIALIZER.deserialize_json(text)
                task = next(t for t in wf.get_tasks() if t.state == READY and t.task_spec.manual)
                task.data.update(data)
                task.run()
                wf.do_engine_steps()
                conn.execute(sa.text("UPDATE naive SET state = :s WHERE id = :i"),
                             {"i": i, "s": SERIALIZER.serialize_json(wf)})
    elapsed = time.perf_counter() - start
    engine.dispose()
    return n_instances * len(STAGE_DATA) / elapsed


def _start_many(url: str, n: int) -> list[int]:
    funnel = open_funnel(Settings(database_url=url))
    ids = [funnel.start("sales_funnel", {}, actor="bench").id for _ in range(n)]
    funnel.engine.dispose()
    return ids


def _advance_all(url: str, ids: list[int]) -> float:
    funnel = open_funnel(Settings(database_url=url), sync=False)
    start = time.perf_counter()
    for data in STAGE_DATA:
        for i in ids:
            funnel.advance(i, data, actor="bench")
    elapsed = time.perf_counter() - start
    funnel.engine.dispose()
    return elapsed


def ours(url: str, n_instances: int, processes: int = 1) -> float:
    """Advances/s through Funnel.advance (criteria, audit, tasks, durable commit each)."""
    ids = _start_many(url, n_instances)
    if processes == 1:
        return len(ids) * len(STAGE_DATA) / _advance_all(url, ids)
    chunks = [ids[k::processes] for k in range(processes)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(processes) as pool:
        # each worker times only its advancing loop (not spawn and bootstrap); the slowest bounds the rate
        elapsed = pool.starmap(_advance_all, [(url, c) for c in chunks])
    return len(ids) * len(STAGE_DATA) / max(elapsed)


def state_size(url: str) -> dict[str, float]:
    """Bytes of stored runtime state per instance (ours) and of the naive full JSON."""
    specs = _specs()
    wf = Workflow.start(specs, {})
    return {"ours_state_bytes": len(pack(wf.state())),  # as instance.state stores it (deflated)
            "naive_state_bytes": len(SERIALIZER.serialize_json(wf.wf))}


def run(workdir: Path, *, quick: bool) -> list[Row]:
    n = 40 if quick else 250
    rows: list[Row] = []
    floor_rate = floor(n)
    for kind in ("sqlite", "postgresql"):
        with database(kind, workdir) as url:
            naive_rate = naive(n, url)
        with database(kind, workdir) as url:
            committed_rate = floor(n, commit_to=url)
        with database(kind, workdir) as url:
            our_rate = ours(url, n)
        rows.append(Row(f"engine advance, {kind}: vs floor", "advances/s", "bare spiff", floor_rate, our_rate,
                        "time/advance <= 2x floor (ratio >= 0.5)"))
        # no goal: what the floor leaves out of any durable advance, so the two ratio goals can be read against it
        rows.append(Row(f"engine advance, {kind}: vs floor + commit", "advances/s", "spiff + 1-row commit",
                        committed_rate, our_rate, "figure (the least a durable advance costs)"))
        rows.append(Row(f"engine advance, {kind}: vs naive", "advances/s", "naive JSON", naive_rate, our_rate,
                        ">= 5x naive (ratio >= 5)"))
    with database("sqlite", workdir) as url:
        two = ours(url, n * 2, processes=2)
    rows.append(Row("engine advance, sqlite, 2 processes", "advances/s", "goal", 1200.0, two, ">= 1,200/s"))
    with database("sqlite", workdir) as url:
        sizes = state_size(url)
    rows.append(Row("stored runtime state per instance", "bytes", "naive JSON", sizes["naive_state_bytes"],
                    sizes["ours_state_bytes"], "<= 4 KB", higher_is_better=False))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scenario 1: persisted advances/s against the floor and naive JSON")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        print(format_table(run(Path(tmp), quick=args.quick)))


if __name__ == "__main__":
    main()

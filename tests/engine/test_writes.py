"""engine.writes.row_object builds objects that behave like constructed ones; engine.db.WriteTurn queues writers;
an instance's open tasks are read through their index."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from engine.db import WriteTurn, make_engine
from engine.instances import Funnel
from engine.models import HumanTask
from engine.writes import _OPEN_TASKS, row_object
from tests.factories import FUNNEL_STAGE_DATA, start_opportunity


def test_given_a_fresh_process_when_the_first_object_is_built_before_any_query_then_its_attributes_work() -> None:
    # given a new interpreter that has imported the models but run no query (mappers not configured yet)
    code = ("from engine.models import Instance\nfrom engine.writes import row_object\n"
            "row = row_object(Instance, {'id': 7, 'status': 'running', 'workflow': 'w'})\n"
            "print(row.status, row.id)")
    # when it builds and reads an object
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    # then the attributes read back (no half-initialised mapper)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["running", "7"]


def test_given_values_when_built_then_it_is_a_transient_object_whose_changes_are_tracked() -> None:
    import sqlalchemy as sa

    task = row_object(HumanTask, {"id": None, "instance_id": 1, "task_uuid": "u", "task_spec": "s", "name": "n",
                                  "status": "ready"})
    state = sa.inspect(task)
    assert state.transient
    task.assignee = "dana"
    assert state.attrs.assignee.history.added == ["dana"]


def test_given_another_process_holds_the_sqlite_write_turn_when_we_take_it_then_we_wait_for_its_release(
        tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'turn.sqlite3'}"
    # given a second process that takes the write turn, says so, and holds it for 0.6 s
    code = ("import sys, time\nfrom engine.db import WriteTurn, make_engine\n"
            f"turn = WriteTurn(make_engine({url!r}))\n"
            "with turn:\n    print('held', flush=True)\n    time.sleep(0.6)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # when this process takes the turn
        start = time.monotonic()
        with WriteTurn(make_engine(url)):
            waited = time.monotonic() - start
        # then it waited for the other writer's release (and was woken then, not polling with back-off)
        assert 0.3 < waited < 5
    finally:
        holder.wait(timeout=30)


def test_given_many_instances_and_no_statistics_then_open_tasks_are_read_through_their_partial_index(
        funnel: Funnel) -> None:
    # given 200 opportunities (each with one open task and one finished) on a database nobody has analyzed
    ids = [start_opportunity(funnel).id for _ in range(200)]
    for i in ids[:100]:
        funnel.advance(i, FUNNEL_STAGE_DATA[0], actor="rep1")
    # when the database plans the read every change and permission check makes (an instance's open tasks)
    sql = str(_OPEN_TASKS.params(b_instance=ids[-1]).compile(dialect=funnel.engine.dialect,
                                                               compile_kwargs={"literal_binds": True}))
    explain = "EXPLAIN QUERY PLAN " if funnel.engine.dialect.name == "sqlite" else "EXPLAIN "
    with funnel.engine.connect() as conn:
        plan = " ".join(str(r) for r in conn.exec_driver_sql(explain + sql))
    # then it uses the partial index of open tasks, not a scan of every ready task filtered by instance
    assert "ix_human_task_open" in plan, plan

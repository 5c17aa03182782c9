"""engine.writes.row_object: unvalidated table-model objects must behave exactly like constructed ones."""

from __future__ import annotations

import subprocess
import sys

from engine.models import HumanTask
from engine.writes import row_object


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

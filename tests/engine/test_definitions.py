"""Definition versions: content-hash versioning, pinning of running instances, hostile files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.bootstrap import open_funnel
from engine.definitions import read_sources
from engine.errors import DefinitionError, TransitionRefused, WorkflowFailed
from engine.instances import Funnel
from tests.conftest import WORKFLOWS, FakeClock, make_settings
from tests.factories import linear_workflow

STRICT = '<funnel:criterion name="amount_over_100" test="amount &gt; 100" message="Set amount above 100."/>'


def folder_with(tmp_path: Path, content: bytes, name: str = "two_step.bpmn") -> Path:
    folder = tmp_path / "wf"
    folder.mkdir(exist_ok=True)
    (folder / name).write_bytes(content)
    return folder


def test_given_the_shipped_folder_when_synced_twice_then_one_version_per_workflow(
    db_url: str, clock: FakeClock
) -> None:
    first = open_funnel(make_settings(db_url), clock=clock)
    second = open_funnel(make_settings(db_url), clock=clock)
    versions = second.definitions.versions()
    shipped = sorted(p.stem for p in WORKFLOWS.glob("*.bpmn"))
    assert sorted((v.workflow, v.version) for v in versions) == [(name, 1) for name in shipped]
    sales = next(v for v in versions if v.workflow == "sales_funnel")
    assert sales.content_hash == first.definitions.latest("sales_funnel").content_hash
    assert sales.source_name == "sales_funnel.bpmn"


def test_given_a_running_instance_when_the_file_changes_then_it_keeps_its_version(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    # given v1 (no criterion) and an instance started on it
    folder = folder_with(tmp_path, linear_workflow())
    f1 = open_funnel(make_settings(db_url, folder), clock=clock)
    old = f1.start("two_step", {"amount": 5}, actor="rep1")
    # when the file changes (stage 1 now needs amount > 100) and the service restarts
    folder_with(tmp_path, linear_workflow(criteria={1: STRICT}))
    f2 = open_funnel(make_settings(db_url, folder), clock=clock)
    new = f2.start("two_step", {"amount": 5}, actor="rep1")
    # then new instances use v2 and refuse; the running one advances under v1's rules
    assert f2.definitions.get(new.definition_version_id).version == 2
    assert f2.definitions.get(old.definition_version_id).version == 1
    with pytest.raises(TransitionRefused, match="amount_over_100"):
        f2.advance(new.id, {}, actor="rep1")
    assert f2.advance(old.id, {}, actor="rep1").stage == "Stage 2"


def test_given_an_evicted_cache_when_loading_an_old_version_then_it_comes_from_the_database(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, linear_workflow())
    funnel = open_funnel(make_settings(db_url, folder), clock=clock)
    view = funnel.start("two_step", {}, actor="rep1")
    # the file disappears and a fresh process (empty cache) loads the instance
    (folder / "two_step.bpmn").unlink()
    fresh = open_funnel(make_settings(db_url, folder), clock=clock, sync=False)
    assert fresh.advance(view.id, {}, actor="rep1").stage == "Stage 2"


HOSTILE = {
    "import in a condition": dict(condition="__import__('os').system('true')"),
    "dunder escape in a condition": dict(condition="().__class__.__bases__[0].__subclasses__()"),
    "import in a script": dict(script="import os"),
    "file access in a script": dict(script="data = open('/etc/passwd').read()"),
    "format escape in a criterion": dict(
        criteria={1: '<funnel:criterion name="x" message="m" test="\'{0.__class__}\'.format(1)"/>'}
    ),
}


@pytest.mark.parametrize("variant", sorted(HOSTILE))
def test_given_a_hostile_workflow_file_when_loaded_then_refused_naming_file_element_and_line(
    variant: str,
) -> None:
    content = linear_workflow(**HOSTILE[variant])  # type: ignore[arg-type]
    with pytest.raises(DefinitionError) as refused:
        read_sources("evil.bpmn", content, {})
    [*problems] = refused.value.problems
    assert problems, variant
    for p in problems:
        assert p.file == "evil.bpmn"
        assert p.line is not None and p.element
    assert any(e in {p.element for p in problems} for e in ("fc", "script1", "stage1"))


def test_given_a_broken_shipped_folder_when_serving_then_start_up_lists_every_problem(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, linear_workflow(script="import os"))
    (folder / "bad.bpmn").write_bytes(b"<not-closed")
    with pytest.raises(DefinitionError) as refused:
        open_funnel(make_settings(db_url, folder), clock=clock)
    files = {Path(p.file).name for p in refused.value.problems}
    assert files == {"two_step.bpmn", "bad.bpmn"}


def test_given_a_script_that_fails_at_run_time_when_advancing_then_nothing_is_written(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    folder = folder_with(tmp_path, linear_workflow(script="total = amount / 0"))
    funnel: Funnel = open_funnel(make_settings(db_url, folder), clock=clock)
    view = funnel.start("two_step", {"amount": 1}, actor="rep1")
    with pytest.raises(WorkflowFailed, match="ZeroDivisionError"):
        funnel.advance(view.id, {}, actor="rep1")
    after = funnel.get(view.id)
    assert (after.stage, after.row_version) == ("Stage 1", 1)


def test_shipped_workflows_folder_exists() -> None:
    assert (WORKFLOWS / "sales_funnel.bpmn").is_file()

"""The `funnel` command line: validate verdicts and exit codes, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app
from tests.conftest import REPO, SHARED, WORKFLOWS
from tests.factories import linear_workflow

runner = CliRunner()


def test_given_the_shipped_workflows_when_validated_then_ok_and_exit_zero() -> None:
    result = runner.invoke(app, ["validate", str(WORKFLOWS)])
    assert result.exit_code == 0, result.output
    assert "sales_funnel.bpmn: ok" in result.output


def test_given_a_bad_file_when_validated_then_problems_and_exit_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bpmn"
    bad.write_bytes(linear_workflow(script="import os"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert "bad.bpmn:" in result.output and "script1" in result.output and "import" in result.output
    assert "Traceback" not in result.output


def test_given_the_miwg_folder_when_validated_then_every_file_gets_a_verdict() -> None:
    folder = SHARED / "conformance" / "bpmn-miwg"
    result = runner.invoke(app, ["validate", str(folder)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    for f in sorted(folder.glob("*.bpmn")):
        assert f.name in result.output


def test_given_a_missing_path_when_validated_then_a_clear_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.bpmn")])
    assert result.exit_code == 1
    assert "no such file" in result.output


@pytest.mark.parametrize("command", [["serve"], ["migrate"], ["scheduler", "--once"]])
def test_given_unusable_settings_when_a_command_runs_then_it_names_each_one_and_exits_two(command: list[str]) -> None:
    # given two FUNNEL_* variables that cannot be used
    env = {**os.environ, "FUNNEL_WORKERS": "0", "FUNNEL_PORT": "eighty", "PYTHONPATH": str(REPO)}
    # when the real entry point runs
    done = subprocess.run([sys.executable, "-c", "from api.cli import main; main()", *command], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    # then one line names both, what they hold and what they must be; no traceback, nothing served or changed
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    assert "FUNNEL_WORKERS='0': Input should be greater than or equal to 1" in done.stderr
    assert "FUNNEL_PORT='eighty': Input should be a valid integer" in done.stderr

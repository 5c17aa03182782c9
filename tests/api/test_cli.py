"""The `funnel` command line: validate verdicts and exit codes, never a traceback."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from api.cli import app
from tests.conftest import SHARED, WORKFLOWS
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

"""Workflow definitions over HTTP: list versions with stages and criteria, lint uploads with the same verdicts
as `funnel validate`, publish new versions (process owners only; refused with every problem)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from engine.instances import Funnel
from tests.api_factories import Staff, problem_of, start
from tests.conftest import WORKFLOWS
from tests.customer_factories import db_snapshot
from tests.factories import linear_workflow
from tests.people_factories import assigned_workflow, decision

XML = {"content-type": "application/xml"}


def test_given_the_shipped_workflows_then_versions_stages_criteria_and_policies_are_listed(staff: Staff) -> None:
    listed = {w["workflow"]: w for w in staff.as_("alice").get("/api/workflows").json()}
    assert {"sales_funnel", "service_request", "routing_slip", "project_funding"} <= listed.keys()
    sales = listed["sales_funnel"]
    assert (sales["version"], sales["source"], sales["title"]) == (1, "sales_funnel.bpmn", "Sales funnel")
    qualification = sales["stages"][1]
    assert (qualification["name"], qualification["order"], qualification["probability"]) == ("Qualification", 2, 0.2)
    assert {c["name"] for c in qualification["criteria"]} >= {"budget_confirmed"}
    assert listed["service_request"]["policy"]["waiting"] == "allowed"
    assert "sla" in sales


def test_given_uploads_when_validated_then_the_verdicts_are_those_of_funnel_validate(staff: Staff,
                                                                                      tmp_path: Path) -> None:
    alice = staff.as_("alice")
    raw = alice.post("/api/workflows/validate", content=linear_workflow(), headers=XML,
                     params={"filename": "two_step.bpmn"})
    assert raw.json()["ok"] is True and raw.json()["verdicts"][0]["processes"] == ["two_step"]
    # a shipped file with the decision table it calls: what `funnel validate workflows/` says of them
    shipped = alice.post("/api/workflows/validate", files=[
        ("file", ("sales_funnel.bpmn", (WORKFLOWS / "sales_funnel.bpmn").read_bytes())),
        ("file", ("assignment.dmn", (WORKFLOWS / "assignment.dmn").read_bytes()))]).json()
    assert shipped["ok"] is True and shipped["verdicts"][0]["processes"] == ["sales_funnel"]
    # a bad file: the same problems as the command line reports
    bad = linear_workflow(script="import os")
    (tmp_path / "bad.bpmn").write_bytes(bad)
    cli_output = CliRunner().invoke(cli, ["validate", str(tmp_path / "bad.bpmn")]).output
    verdict = alice.post("/api/workflows/validate", files={"file": ("bad.bpmn", bad)}).json()
    assert verdict["ok"] is False
    for problem in verdict["verdicts"][0]["problems"]:
        assert problem["message"] in cli_output and problem["element"] in cli_output
    # without the decision table it calls, the same file is refused, naming it
    bpmn = assigned_workflow(pid="routed", decision_id="assign_routed")
    alone = alice.post("/api/workflows/validate", files={"file": ("routed.bpmn", bpmn)}).json()
    assert alone["ok"] is False and "assign_routed" in repr(alone["verdicts"][0]["problems"])
    dmn = decision("assign_routed", ["region"], [(['"north"'], {"team": '"sales_north"'})])
    both = alice.post("/api/workflows/validate", files=[("file", ("routed.bpmn", bpmn)),
                                                        ("file", ("assign.dmn", dmn))]).json()
    assert both["ok"] is True and [v["kind"] for v in both["verdicts"]] == ["bpmn", "dmn"]


@pytest.mark.parametrize(("content", "params", "says"), [
    (b"", {}, "the request has no file"),
    (b"<x/>", {"filename": "../../etc/passwd"}, "must be a plain name ending in .bpmn or .dmn"),
    (b"<x/>", {"filename": "notes.txt"}, "must be a plain name ending in .bpmn or .dmn"),
])
def test_given_no_readable_upload_then_422_saying_what_to_send(staff: Staff, content: bytes,
                                                               params: dict[str, str], says: str) -> None:
    response = staff.as_("alice").post("/api/workflows/validate", content=content, headers=XML, params=params)
    assert says in problem_of(response, 422)["detail"]


def test_given_a_multipart_form_without_a_file_then_422(staff: Staff) -> None:
    response = staff.as_("alice").post("/api/workflows/validate", data={"note": "no file"},
                                       files={"other": ("", b"")})
    assert "the form has no file part" in problem_of(response, 422)["detail"]


def test_given_a_process_owner_when_publishing_then_new_versions_only_for_new_content(
        funnel: Funnel, staff: Staff) -> None:
    olga = staff.as_("olga")
    first = olga.post("/api/workflows", content=linear_workflow(pid="deal", title="Deal"), headers=XML,
                      params={"filename": "deal.bpmn"})
    assert first.status_code == 201, first.text
    assert [(p["workflow"], p["version"], p["new"]) for p in first.json()] == [("deal", 1, True)]
    same = olga.post("/api/workflows", files={"file": ("deal.bpmn", linear_workflow(pid="deal", title="Deal"))})
    assert [(p["version"], p["new"]) for p in same.json()] == [(1, False)]
    changed = olga.post("/api/workflows", files={"file": ("deal.bpmn", linear_workflow(pid="deal", stages=3))})
    assert [(p["version"], p["new"]) for p in changed.json()] == [(2, True)]
    # and reps can start it at once, on the new version
    started = start(staff.as_("alice"), "deal", customer_tier="C", data={})
    assert (started["definition_version"], started["stage"]) == (2, "Stage 1")


def test_given_an_invalid_file_when_publishing_then_422_with_every_problem_and_nothing_stored(
        funnel: Funnel, staff: Staff) -> None:
    before = db_snapshot(funnel)
    versions = len(staff.as_("olga").get("/api/workflows").json())
    bad = linear_workflow(pid="evil", script="().__class__.__subclasses__()", condition="import os")
    body = problem_of(staff.as_("olga").post("/api/workflows", files={"file": ("evil.bpmn", bad)}), 422)
    assert len(body["problems"]) >= 2 and all(p["file"] == "evil.bpmn" for p in body["problems"])
    assert problem_of(staff.as_("olga").post("/api/workflows", files={"file": ("a.dmn", b"<x/>")}), 422)
    assert db_snapshot(funnel) == before
    assert len(staff.as_("olga").get("/api/workflows").json()) == versions

"""A won opportunity starts its project funding track: declared in the file, same transaction, exactly once."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session, select

from engine import customers, lint
from engine.bootstrap import open_funnel
from engine.errors import Conflict, FunnelError, InvalidInput, NotFound, WorkflowFailed
from engine.instances import Funnel
from engine.links import links_of
from engine.models import Instance
from engine.models.customers import InstanceLink
from engine.stages import Outcome, Starts, WorkflowMeta
from tests.conftest import WORKFLOWS, FakeClock, make_settings
from tests.customer_factories import db_snapshot, fund_to, make_customer, start_for, win
from tests.factories import LOST, WON, advance_to, linear_workflow, start_opportunity


def projects(funnel: Funnel) -> list[Instance]:
    with Session(funnel.engine) as session:
        return list(session.exec(select(Instance).where(Instance.workflow == "project_funding")))


def with_outcome(starts: str, *, pid: str = "two_step", stages: int = 1) -> bytes:
    """A small workflow whose end event has a 'done' outcome holding `starts`."""
    end = ('<bpmn:endEvent id="end"><bpmn:extensionElements><funnel:outcome status="done">'
           f"{starts}</funnel:outcome></bpmn:extensionElements></bpmn:endEvent>")
    return linear_workflow(pid=pid, stages=stages).replace(b'<bpmn:endEvent id="end"/>', end.encode())


# ---------------------------------------------------------------- the won deal and its project


def test_given_a_customers_opportunity_when_won_then_its_project_starts_linked_both_ways(funnel: Funnel) -> None:
    # given an opportunity of a real customer
    acme = make_customer(funnel, tier="A")
    opportunity = start_for(funnel, acme.id, customer_name="Acme Steel")
    # when it is won
    won = win(funnel, opportunity.id, actor="rep7")
    # then one project exists, for the same customer, with the contract carried over
    assert won.status == "won"
    [project] = projects(funnel)
    assert project.id is not None
    assert (project.customer_id, project.customer_tier, project.stage, project.status) == (
        acme.id, "A", "First funding", "running")
    assert project.data == {"contract_number": WON["contract_number"], "signed_amount": WON["signed_amount"],
                            "customer_name": "Acme Steel", "customer_id": acme.id}
    assert project.amount == WON["signed_amount"]
    assert (project.created_by, project.created_at) == ("rep7", won.updated_at)
    # and the opportunity shows its project, the project its opportunity, customer and contract
    [forward] = links_of(funnel, opportunity.id)
    assert (forward.kind, forward.direction, forward.instance_id, forward.workflow) == (
        "project", "started", project.id, "project_funding")
    [back] = links_of(funnel, project.id)
    assert (back.kind, back.direction, back.instance_id, back.workflow, back.status) == (
        "project", "started_by", opportunity.id, "sales_funnel", "won")
    assert (back.customer_id, back.copied["contract_number"]) == (acme.id, WON["contract_number"])
    assert json.loads(json.dumps(back.to_dict(), default=str))["copied"] == forward.copied
    [created] = funnel.history(project.id)
    assert (created.kind, created.actor) == ("created", "rep7")


def test_given_an_opportunity_without_a_customer_record_when_won_then_the_project_keeps_its_tier(
    funnel: Funnel,
) -> None:
    win(funnel, start_opportunity(funnel, tier="C").id)
    [project] = projects(funnel)
    assert (project.customer_id, project.customer_tier) == (None, "C")
    assert project.data["contract_number"] == WON["contract_number"]
    assert "customer_name" in project.data  # stage 1 data of the factory names the customer


def test_given_a_lost_opportunity_then_no_project_starts(funnel: Funnel) -> None:
    view = advance_to(funnel, start_opportunity(funnel).id, 5)
    assert funnel.advance(view.id, LOST, actor="rep1").status == "lost"
    assert projects(funnel) == [] and links_of(funnel, view.id) == []


def test_given_a_won_opportunity_when_the_win_is_retried_then_conflict_and_still_one_project(
    funnel: Funnel,
) -> None:
    view = win(funnel, start_opportunity(funnel).id)
    before = db_snapshot(funnel)
    with pytest.raises(Conflict, match="is won"):
        funnel.advance(view.id, WON, actor="rep1")
    assert db_snapshot(funnel) == before
    assert len(projects(funnel)) == 1


def test_given_two_simultaneous_wins_then_exactly_one_project_and_one_link(funnel: Funnel) -> None:
    # given an opportunity at the outcome stage
    view = advance_to(funnel, start_opportunity(funnel).id, 5)
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def worker(i: int) -> None:
        barrier.wait()
        try:
            results[i] = funnel.advance(view.id, WON, actor=f"rep{i}")
        except FunnelError as err:
            results[i] = err

    # when two reps win it at the same moment
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then one wins, the other is told, and exactly one project and link exist
    [winner] = [i for i, r in enumerate(results) if not isinstance(r, Exception)]
    assert results[winner].status == "won" and isinstance(results[1 - winner], Conflict)
    [project] = projects(funnel)
    assert [link.instance_id for link in links_of(funnel, view.id)] == [project.id]
    assert project.created_by == f"rep{winner}"


def test_given_the_link_when_inserted_twice_then_the_database_refuses(funnel: Funnel) -> None:
    view = win(funnel, start_opportunity(funnel).id)
    [project] = projects(funnel)
    with pytest.raises(sa.exc.IntegrityError), Session(funnel.engine) as session:
        session.add(InstanceLink(from_instance_id=view.id, to_instance_id=project.id or 0, kind="project",
                                 created_by="forger", created_at=view.updated_at))
        session.commit()


def test_given_the_project_workflow_is_missing_when_winning_then_refused_and_nothing_written(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    # given a deployment that has the funnel but not the project funding track
    folder = tmp_path / "wf"
    folder.mkdir()
    shutil.copy(WORKFLOWS / "sales_funnel.bpmn", folder)
    for dmn in WORKFLOWS.glob("*.dmn"):  # the funnel's assignment rules
        shutil.copy(dmn, folder)
    funnel = open_funnel(make_settings(db_url, folder), clock=clock)
    view = advance_to(funnel, start_opportunity(funnel).id, 5)
    before = db_snapshot(funnel)
    # when / then the win is refused as a whole, saying why
    with pytest.raises(WorkflowFailed, match="starts workflow 'project_funding' as the project, which failed"):
        funnel.advance(view.id, WON, actor="rep1")
    assert db_snapshot(funnel) == before
    assert funnel.get(view.id).stage == "Sales outcome"
    funnel.engine.dispose()


def test_given_a_won_deals_customer_when_the_tier_changes_then_the_open_project_follows(funnel: Funnel) -> None:
    acme = make_customer(funnel, tier="B")
    won = win(funnel, start_for(funnel, acme.id).id)
    [project] = projects(funnel)
    customers.update(funnel, acme.id, {"tier": "A"}, actor="kam", reason="strategic account")
    assert funnel.get(project.id or 0).customer_tier == "A"
    assert funnel.get(won.id).customer_tier == "B"  # the won deal is history
    closed = fund_to(funnel, project.id or 0, 4)
    assert closed.customer_tier == "A"


@pytest.mark.parametrize(("instance_id", "error"), [(999, NotFound), ("1", InvalidInput), (True, InvalidInput)])
def test_given_a_bad_instance_id_when_asking_for_links_then_refused(
    funnel: Funnel, instance_id: Any, error: type[FunnelError]
) -> None:
    with pytest.raises(error):
        links_of(funnel, instance_id)


# ---------------------------------------------------------------- the declaration


def test_given_the_shipped_funnel_then_its_won_outcome_declares_the_project() -> None:
    definition = (WORKFLOWS / "sales_funnel.bpmn").read_bytes()
    companions = {p.name: p.read_bytes() for p in WORKFLOWS.glob("*.dmn")}
    verdict = lint.lint_document(definition, "sales_funnel.bpmn", companions=companions)
    assert verdict.ok, verdict.problems
    meta = WorkflowMeta.from_dict(json.loads(json.dumps(_meta(definition).to_dict())))
    won = meta.outcome_for("won")
    assert won is not None and won.starts == (
        Starts("project_funding", "project", ("contract_number", "signed_amount", "customer_name")),)
    lost = meta.outcome_for("lost")
    assert lost is not None and lost.starts == ()


def test_given_meta_stored_before_starts_existed_when_loaded_then_it_has_no_starts() -> None:
    old = {"end_event": "won", "status": "won", "probability": 1.0}
    assert Outcome.from_dict(old) == Outcome("won", "won", 1.0, ())


def _meta(content: bytes) -> WorkflowMeta:
    from lxml import etree

    from engine.stages import NS, parse_workflow_meta

    process = etree.fromstring(content).find("bpmn:process", NS)
    meta, problems = parse_workflow_meta(process, "x.bpmn")
    assert problems == []
    return meta


@pytest.mark.parametrize(("starts", "message"), [
    ('<funnel:starts link="project"/>', 'funnel:starts needs workflow="..."'),
    ('<funnel:starts workflow="project funding" link="project"/>', 'funnel:starts needs workflow="..."'),
    ('<funnel:starts workflow="project_funding"/>', "funnel:starts link='' must name the relation"),
    ('<funnel:starts workflow="project_funding" link="Project X"/>', "lower-case letters, digits and _"),
    ('<funnel:starts workflow="project_funding" link="project" copy="amount 2nd _secret customer_tier filled"/>',
     "copy lists '2nd', '_secret', 'customer_tier', 'filled', which cannot be data fields"),
    ('<funnel:starts workflow="a" link="project"/><funnel:starts workflow="b" link="project"/>',
     "link 'project' is declared twice on this outcome"),
])
def test_given_a_bad_starts_declaration_when_validated_then_the_problem_says_what_to_fix(
    starts: str, message: str
) -> None:
    verdict = lint.lint_document(with_outcome(starts), "deal.bpmn")
    assert not verdict.ok
    [problem] = [p for p in verdict.problems if "funnel:starts" in p.message]
    assert message in problem.message
    assert problem.element == "end" and problem.line


def test_given_a_good_starts_declaration_when_validated_then_ok() -> None:
    starts = '<funnel:starts workflow="project_funding" link="project" copy="amount amount"/>'
    verdict = lint.lint_document(with_outcome(starts), "deal.bpmn")
    assert verdict.ok, verdict.problems
    assert _meta(with_outcome(starts)).outcomes[0].starts == (Starts("project_funding", "project", ("amount",)),)


def test_given_workflows_that_start_themselves_without_a_stage_then_refused_not_recursing_forever(
    db_url: str, clock: FakeClock, tmp_path: Path
) -> None:
    folder = tmp_path / "wf"
    folder.mkdir()
    (folder / "echo.bpmn").write_bytes(with_outcome('<funnel:starts workflow="echo" link="next"/>', pid="echo",
                                                    stages=0))
    funnel = open_funnel(make_settings(db_url, folder), clock=clock)
    with pytest.raises(WorkflowFailed, match="nests deeper than 8 workflows"):
        funnel.start("echo", {}, actor="rep1")
    with Session(funnel.engine) as session:
        assert session.exec(select(Instance)).all() == []
    funnel.engine.dispose()


def test_given_a_win_and_a_tier_change_at_once_then_the_project_ends_with_the_customers_tier(
    funnel: Funnel,
) -> None:
    # given a customer's opportunity at the outcome stage
    acme = make_customer(funnel, tier="B")
    view = advance_to(funnel, start_for(funnel, acme.id).id, 5)
    barrier = threading.Barrier(2)
    results: list[Any] = [None, None]

    def run(i: int, action: Any) -> None:
        barrier.wait()
        try:
            results[i] = action()
        except FunnelError as err:  # anything else (a raw database error) fails the test in the thread
            results[i] = err

    actions = [lambda: funnel.advance(view.id, WON, actor="rep1"),
               lambda: customers.update(funnel, acme.id, {"tier": "A"}, actor="kam", reason="review")]
    # when the win and the tier change race
    threads = [threading.Thread(target=run, args=(i, a)) for i, a in enumerate(actions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # then any refusal is a conflict to retry, and every open instance has the customer's tier
    assert all(r is not None and (not isinstance(r, Exception) or isinstance(r, Conflict)) for r in results)
    tier = customers.get(funnel, acme.id).tier
    for project in projects(funnel):
        assert project.customer_tier == tier
    assert len(projects(funnel)) == (0 if isinstance(results[0], Conflict) else 1)

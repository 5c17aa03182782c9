"""The assignment paragraph is rendered from the stored explanation, not stored beside it (engine.audit_text)."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlmodel import Session

from engine import people
from engine.assignment import explanations
from engine.audit_text import assignment_summary, reason_of
from engine.instances import Funnel
from engine.models import AuditEvent
from tests.conftest import FakeClock
from tests.people_factories import alerts, assigned_events, opportunity, sales_roster

NORTH = ("Rule 4 of assign_sales (Region \"north\": Everything else in the north: northern sales team in rotation): "
         "alice gets it: first in rotation. Passed over: bob (not next in rotation), nora (not next in rotation), "
         "ivan (inactive).")


def stored_reasons(funnel: Funnel, instance_id: int) -> list[tuple[str, str | None]]:
    with funnel.engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT kind, reason FROM audit_event WHERE instance_id = :i ORDER BY id"),
                            {"i": instance_id})
        return [(kind, reason) for kind, reason in rows]


def test_given_an_assignment_then_its_paragraph_is_not_stored_but_the_history_reads_it(
        funnel: Funnel, clock: FakeClock) -> None:
    # given the demo roster
    sales_roster(funnel.engine, now=clock.now)
    # when an opportunity in the north is assigned
    view = opportunity(funnel, region="north")
    # then the row keeps the facts only, and the history and the explanations read the same paragraph
    assert stored_reasons(funnel, view.id) == [("created", None), ("assigned", None)]
    [event] = assigned_events(funnel, view.id)
    assert event.reason == NORTH
    [item] = explanations(funnel.engine, view.id)
    assert item.summary == NORTH


def test_given_nobody_can_take_the_task_then_the_alert_and_the_history_give_the_same_paragraph(
        funnel: Funnel, clock: FakeClock) -> None:
    # given nobody in the south can take work
    sales_roster(funnel.engine, now=clock.now)
    for login in ("carol", "diego"):
        people.deactivate_user(funnel.engine, login)
    # when
    view = opportunity(funnel, region="south")
    # then the alert (written at the time) ends with the paragraph the history renders now
    [event] = assigned_events(funnel, view.id)
    [alert] = alerts(funnel.engine)
    assert event.reason is not None and event.reason.startswith("Rule ")
    assert alert.reason.endswith(f". {event.reason}")


def test_given_no_rule_matched_then_the_paragraph_names_the_inputs(funnel: Funnel, clock: FakeClock) -> None:
    sales_roster(funnel.engine, now=clock.now)
    view = opportunity(funnel, region=None, actor="bob")
    [event] = assigned_events(funnel, view.id)
    assert event.reason is not None
    assert event.reason.startswith("No rule of assign_sales matched: bob keeps it (the current owner) (inputs: ")
    assert "'Region': None" not in event.reason and "Region None" in event.reason


def test_given_an_entry_written_before_then_its_stored_reason_is_shown_as_stored(funnel: Funnel) -> None:
    # given an assignment entry from before the paragraph was rendered at read (a stored reason, no note)
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    view = funnel.start("sales_funnel", {}, actor="alice")
    with Session(funnel.engine) as session:
        session.add(AuditEvent(instance_id=view.id, at=at, actor="system:assignment", kind="assigned",
                               reason="Rule 1 of assign_sales: alice gets it.", row_version=1,
                               changes={"explanation": {"rule": None, "inputs": {}}}))
        session.commit()
    # when / then
    [event] = assigned_events(funnel, view.id)
    assert event.reason == "Rule 1 of assign_sales: alice gets it."


def test_given_other_entries_then_their_reasons_are_untouched() -> None:
    at = datetime(2026, 1, 5, 9, tzinfo=UTC)
    moved = AuditEvent(instance_id=1, at=at, actor="bob", kind="moved_back", reason=None, row_version=2,
                       changes={"explanation": {"note": "not an assignment"}})
    assert reason_of(moved) is None


def test_a_summary_without_a_rule_capitalises_the_note_and_lists_the_inputs() -> None:
    text = assignment_summary({"note": "no rule of x matched: bob keeps it", "rule": None,
                               "inputs": {"Region": None, "Amount": 5.0}})
    assert text == "No rule of x matched: bob keeps it (inputs: Region None, Amount 5.0)."

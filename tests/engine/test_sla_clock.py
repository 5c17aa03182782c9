"""An SLA clock is a ledger: every figure is derived from start / pause / resume / stop / retarget events.

These tests use the ledger and the shipped calendar directly (no database): Asia/Shanghai, Mon-Fri
09:00-12:00 and 13:00-18:00; the week of Monday 23 November 2026 has no holiday. The policy tests
check the `funnel:sla` declarations the linter and loader read.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from lxml import etree

from engine.lint import lint_document, lint_paths
from engine.sla_ledger import PAUSE, RESUME, RETARGET, START, STOP, Entry, derive
from engine.sla_policy import SlaPolicy, parse_business_duration
from engine.spiff import xml_parser
from engine.stages import NS, WorkflowMeta, parse_workflow_meta
from tests.conftest import WORKFLOWS
from tests.factories import linear_workflow
from tests.sla_factories import default_calendar, shanghai

CAL = default_calendar()
H = timedelta(hours=1)


def mon(hour: int, minute: int = 0) -> datetime:
    return shanghai(2026, 11, 23, hour, minute)


def tue(hour: int, minute: int = 0) -> datetime:
    return shanghai(2026, 11, 24, hour, minute)


def wed(hour: int, minute: int = 0) -> datetime:
    return shanghai(2026, 11, 25, hour, minute)


def figures(entries: list[Entry], now: datetime, cycle: int | None = None):  # type: ignore[no-untyped-def]
    return derive(CAL, entries, now=now, warning=0.75, cycle=cycle)


# ---------------------------------------------------------------- pauses


def test_given_a_running_clock_when_paused_and_resumed_then_the_deadline_moves_by_exactly_the_paused_business_time(
) -> None:
    # given an 8-hour clock started Monday 09:00 (deadline Monday 18:00)
    started = [Entry(START, mon(9), 1, 8 * H)]
    before = figures(started, mon(9))
    assert before.deadline == mon(18)
    # when it is paused Monday 10:00 and resumed Tuesday 11:00 (9 business hours later)
    ledger = [*started, Entry(PAUSE, mon(10), 1), Entry(RESUME, tue(11), 1)]
    after = figures(ledger, tue(11))
    # then the deadline moved by exactly those 9 business hours, and 1 hour is consumed
    paused = CAL.elapsed(mon(10), tue(11))
    assert paused == 9 * H
    assert after.deadline == CAL.add(before.deadline, paused) == wed(10)
    assert CAL.elapsed(before.deadline, after.deadline) == paused
    assert (after.status, after.consumed, after.remaining) == ("running", 1 * H, 7 * H)
    # and while paused the clock stood still: no deadline, the same time left
    during = figures([*started, Entry(PAUSE, mon(10), 1)], tue(10))
    assert (during.status, during.deadline, during.consumed, during.remaining) == ("paused", None, 1 * H, 7 * H)


def test_given_a_clock_paused_twice_then_both_pauses_are_added_and_only_running_time_counts() -> None:
    # given an 8-hour clock started Monday 09:00, paused 10:00-14:00 and again 15:00-Tuesday 09:30
    ledger = [Entry(START, mon(9), 1, 8 * H),
              Entry(PAUSE, mon(10), 1), Entry(RESUME, mon(14), 1),
              Entry(PAUSE, mon(15), 1), Entry(RESUME, tue(9, 30), 1)]
    # then only 09-10, 14-15 and from Tuesday 09:30 count
    now = figures(ledger, tue(10))
    assert now.consumed == 2 * H + timedelta(minutes=30)
    paused = CAL.elapsed(mon(10), mon(14)) + CAL.elapsed(mon(15), tue(9, 30))
    assert paused == 3 * H + 3 * H + timedelta(minutes=30)
    assert now.deadline == CAL.add(mon(18), paused) == tue(16, 30)


def test_given_a_clock_created_already_paused_then_it_counts_from_its_first_resume() -> None:
    # given a clock that started and paused at the same instant (the ticket waited from the start)
    ledger = [Entry(START, mon(9), 1, 8 * H), Entry(PAUSE, mon(9), 1)]
    waiting = figures(ledger, tue(15))
    assert (waiting.status, waiting.consumed, waiting.deadline, waiting.breached) == ("paused", timedelta(0), None,
                                                                                      False)
    # when it resumes Tuesday 09:00
    resumed = figures([*ledger, Entry(RESUME, tue(9), 1)], tue(9))
    # then the full target runs from there
    assert (resumed.deadline, resumed.warning_at) == (tue(18), tue(16))


def test_given_a_breached_clock_when_paused_then_it_stays_breached_with_its_deadline_and_overdue_time() -> None:
    # given a 2-hour clock from Monday 09:00 (deadline 11:00), paused at 14:00
    ledger = [Entry(START, mon(9), 1, 2 * H), Entry(PAUSE, mon(14), 1)]
    # then a day later it is still breached, its deadline kept, overdue by the 2 business hours it ran late
    later = figures(ledger, tue(12))
    assert (later.status, later.breached, later.deadline) == ("paused", True, mon(11))
    assert later.remaining == -2 * H
    # and resuming does not undo it
    assert figures([*ledger, Entry(RESUME, tue(9), 1)], tue(10)).breached is True


# ---------------------------------------------------------------- targets, stops and cycles


def test_given_a_new_target_mid_flight_then_consumed_time_is_kept_and_only_the_rest_is_rederived() -> None:
    # given a 16-hour clock from Monday 09:00 that has consumed 3 hours by 13:00
    ledger = [Entry(START, mon(9), 1, 16 * H)]
    assert figures(ledger, mon(13)).consumed == 3 * H
    # when the tier changes and the target becomes 8 hours
    ledger.append(Entry(RETARGET, mon(13), 1, 8 * H))
    # then 5 hours are left from 13:00: Monday 18:00, warning at 6 hours consumed (Monday 16:00)
    now = figures(ledger, mon(13))
    assert (now.consumed, now.remaining, now.deadline, now.warning_at) == (3 * H, 5 * H, mon(18), mon(16))
    # and a target shorter than the time consumed is breached at once, when it was reached
    shorter = figures([*ledger, Entry(RETARGET, mon(14), 1, 2 * H)], mon(14))
    assert (shorter.breached, shorter.deadline, shorter.remaining) == (True, mon(11), -2 * H)


def test_given_a_clock_stopped_before_or_at_its_deadline_then_met_or_breached_is_decided_by_the_ledger() -> None:
    met = figures([Entry(START, mon(9), 1, 2 * H), Entry(STOP, mon(10, 59), 1)], wed(9))
    assert (met.status, met.breached, met.deadline, met.remaining) == ("stopped", False, None, timedelta(minutes=1))
    late = figures([Entry(START, mon(9), 1, 2 * H), Entry(STOP, mon(14), 1)], wed(9))
    assert (late.breached, late.deadline, late.consumed, late.stopped_at) == (True, mon(11), 4 * H, mon(14))


def test_given_a_restarted_clock_then_the_new_cycle_counts_afresh_and_the_old_one_is_kept() -> None:
    # given a clock met in cycle 1 and restarted (a reopened ticket) Tuesday 09:00
    ledger = [Entry(START, mon(9), 1, 4 * H), Entry(STOP, mon(12), 1), Entry(START, tue(9), 2, 4 * H)]
    current = figures(ledger, tue(10))
    assert (current.cycle, current.consumed, current.deadline, current.started_at) == (2, 1 * H, tue(14), tue(9))
    first = figures(ledger, tue(10), cycle=1)
    assert (first.status, first.consumed, first.breached) == ("stopped", 3 * H, False)


def test_given_a_clock_without_target_then_it_counts_but_never_breaches() -> None:
    now = figures([Entry(START, mon(9), 1, None)], wed(9))
    assert (now.consumed, now.deadline, now.remaining, now.breached) == (16 * H, None, None, False)


def test_given_a_start_outside_working_hours_then_the_clock_counts_from_the_next_opening() -> None:
    saturday = shanghai(2026, 11, 21, 10)
    assert figures([Entry(START, saturday, 1, 8 * H)], saturday).deadline == mon(18)


# ---------------------------------------------------------------- policy declarations

SLA = ('<funnel:sla calendar="default" targets="sla_targets" warning="0.75" pause="waiting">'
       '<funnel:clock name="answer" title="Answer" start="created" stop="completed:stage2"/>'
       '<funnel:clock name="stage_time" per="task"/>'
       '<funnel:escalate level="warning" at="warning" notify="assignee"/>'
       '<funnel:escalate level="breach" at="breach" notify="assignee manager"/>'
       '<funnel:escalate level="head" at="breach" after="PT4H" notify="role:admin user:boss"/>'
       "</funnel:sla>")


def with_sla(sla: str) -> bytes:
    return linear_workflow().replace(b"</funnel:workflow>", sla.encode() + b"</funnel:workflow>")


def meta_of(document: bytes) -> tuple[WorkflowMeta, list[str]]:
    process = etree.fromstring(document, xml_parser()).find("bpmn:process", NS)
    assert process is not None
    meta, problems = parse_workflow_meta(process, "x.bpmn")
    return meta, [p.message for p in problems]


def test_given_a_full_declaration_then_it_is_read_and_survives_the_stored_metadata() -> None:
    meta, problems = meta_of(with_sla(SLA))
    assert problems == []
    policy = meta.sla
    assert policy is not None
    assert (policy.calendar, policy.targets, policy.warning, policy.pause) == ("default", "sla_targets", 0.75,
                                                                               ("waiting",))
    assert [(c.name, c.per, c.start, c.stop) for c in policy.clocks] == [
        ("answer", "instance", ("created",), ("completed:stage2",)), ("stage_time", "task", (), ())]
    assert [(lv.name, lv.severity, lv.audit_kind, lv.after, lv.notify) for lv in policy.levels] == [
        ("warning", 0, "sla_warning", timedelta(0), ("assignee",)),
        ("breach", 1, "sla_breach", timedelta(0), ("assignee", "manager")),
        ("head", 2, "sla_escalation", 4 * H, ("role:admin", "user:boss"))]
    assert WorkflowMeta.from_dict(meta.to_dict()) == meta
    assert SlaPolicy.from_dict(None) is None


@pytest.mark.parametrize(("sla", "message"), [
    ('<funnel:sla targets="t"><funnel:clock name="a"/></funnel:sla>', 'funnel:sla needs calendar="<name>"'),
    ('<funnel:sla calendar="default"><funnel:clock name="a"/></funnel:sla>', 'funnel:sla needs targets='),
    ('<funnel:sla calendar="default" targets="t" warning="1.5"><funnel:clock name="a"/></funnel:sla>',
     "warning='1.5' must be the share of the target"),
    ('<funnel:sla calendar="default" targets="t" pause="lunch"><funnel:clock name="a"/></funnel:sla>',
     "pause='lunch' is not a state that can pause a clock"),
    ('<funnel:sla calendar="default" targets="t"/>', "declares no funnel:clock"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="First Response"/></funnel:sla>',
     "must be lower-case letters"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a"/><funnel:clock name="a"/></funnel:sla>',
     "funnel:clock 'a' is declared twice"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a" per="week"/></funnel:sla>',
     "per='week' must be instance"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a" stop="completed:nowhere"/></funnel:sla>',
     "stop='completed:nowhere': use completed:<user task id>"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a" start="opened"/></funnel:sla>',
     "start='opened': use created or opened:<user task id>"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a" per="task" tasks="ghost"/></funnel:sla>',
     "lists task 'ghost', which is not a user task"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a" per="task" stop="completed:stage1"/>'
     "</funnel:sla>", "leave start and stop out"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a"/>'
     '<funnel:escalate level="late" at="deadline" notify="assignee"/></funnel:sla>', "at='deadline' must be warning"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a"/>'
     '<funnel:escalate level="late" at="breach" after="P1D" notify="assignee"/></funnel:sla>',
     "days are ambiguous in business time"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a"/>'
     '<funnel:escalate level="late" at="breach" notify="boss"/></funnel:sla>', "list who is told"),
    ('<funnel:sla calendar="default" targets="t"><funnel:clock name="a"/><funnel:alarm/></funnel:sla>',
     "unknown element alarm inside funnel:sla"),
])
def test_given_a_bad_declaration_then_the_linter_names_what_to_fix_and_it_does_not_load(sla: str, message: str
                                                                                       ) -> None:
    meta, problems = meta_of(with_sla(sla))
    assert meta.sla is None
    assert any(message in p for p in problems), problems
    verdict = lint_document(with_sla(sla), "bad.bpmn")
    assert not verdict.ok
    assert any(message in p.message for p in verdict.problems)


def test_given_the_shipped_workflows_then_they_declare_their_clocks_and_validate() -> None:
    assert all(v.ok for v in lint_paths([WORKFLOWS])), [p for v in lint_paths([WORKFLOWS]) for p in v.problems]
    declared = {}
    for name in ("service_request", "sales_funnel", "routing_slip"):
        meta, problems = meta_of((WORKFLOWS / f"{name}.bpmn").read_bytes())
        assert problems == [] and meta.sla is not None
        declared[name] = [(c.name, c.per) for c in meta.sla.clocks]
    assert declared == {"service_request": [("first_response", "instance"), ("resolution", "instance")],
                        "sales_funnel": [("stage_time", "task")], "routing_slip": [("department_answer", "task")]}


@pytest.mark.parametrize(("text", "expected"), [("PT4H", 4 * H), ("PT30M", timedelta(minutes=30)),
                                                ("PT1H30M", timedelta(hours=1, minutes=30)), ("P1D", None),
                                                ("PT", None), ("4h", None)])
def test_business_durations_are_hours_and_minutes(text: str, expected: timedelta | None) -> None:
    assert parse_business_duration(text) == expected

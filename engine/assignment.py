"""Who gets each task as it becomes ready, and why: a ChangeListener run inside the change's transaction.

Order of precedence for one task (documented in workflows/README.md):
1. the workflow's decision table picks ONE row: COLLECT -> the first matching row in table order;
   UNIQUE -> the only matching row (a second match refuses the whole change: nothing is written);
   no row -> the current owner keeps the work;
2. unless the row says keep_owner = False: a manually chosen owner stays, then a returning stage
   goes back to whoever worked it before, then the current owner stays if in the row's team;
3. the row's named `person`, if available;
4. the row's team by its strategy (round_robin | least_loaded) among members who are active, present,
   have the row's skill and are under capacity; nobody -> the team's unassigned queue plus an alert
   row for the team's manager.
Every decision is written to the instance history as an AuditEvent of kind "assigned".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.audit_text import ASSIGNED, assignment_summary, cells_text, reason_of
from engine.errors import WorkflowFailed
from engine.instances import ChangeEvent
from engine.models import AuditEvent, HumanTask, Instance
from engine.models.people import STRATEGIES, AssignmentAlert, Team, TeamMember, User
from engine.rotation import Candidate, absent_until, open_counts, pick, unavailable
from engine.spiff import DecisionResult, RuleMatch, SpiffError, evaluate_decision

SYSTEM_ACTOR = "system:assignment"


@dataclass(frozen=True)
class Rule:
    """The outputs of the row that decides, checked."""

    team: str | None
    strategy: str
    skill: str | None
    person: str | None
    keep_owner: bool


@dataclass
class Outcome:
    """Who gets a task, on what basis, who else was considered, in one sentence."""

    assignee: str | None
    team: str | None
    basis: str  # no_rule | manual | returning | owner | person | strategy | queued | unknown_team | named
    note: str
    candidates: list[Candidate] = field(default_factory=list)
    alert: str | None = None  # why a person must act (written as an assignment_alert row)
    alert_team: str | None = None  # the team the alert concerns, when it is not `team` (e.g. a missing one)


_ANY_TEAM = sa.select(Team.__table__.c.id).limit(1)  # type: ignore[attr-defined]  # built once: runs on every change


class AssignmentListener:
    """Assigns every task a change opens, when its workflow declares an assignment decision."""

    def after_change(self, event: ChangeEvent) -> None:
        meta = event.definition.meta
        decided = [(t, d) for t in event.opened_tasks if (d := meta.decision_for(t.task_spec))]
        if not decided or event.session.connection().execute(_ANY_TEAM).first() is None:
            return  # no decision declared, or no roster yet: the creator keeps the work, as before
        owner = event.instance.assignee
        for task, _ in decided:
            task.assignee = None  # so the owner's load does not count the task being assigned
        event.session.flush()
        sources = event.definition.dmn
        chosen = [assign_task(event, task, decision, sources, owner=owner) for task, decision in decided]
        first = chosen[0]
        if first != owner:
            event.instance.assignee = first
            event.session.execute(sa.update(Instance).where(col(Instance.id) == event.instance.id)
                                  .values(assignee=first))


def assign_task(event: ChangeEvent, task: HumanTask, decision: str, sources: Mapping[str, str], *,
                owner: str | None) -> str | None:
    """Decide, apply and explain the assignment of one newly opened task; returns the assignee."""
    result = _evaluate(event, task, decision, sources)
    row = result.matches[0] if result.matches else None
    passed: list[Candidate] = []
    if row is None:
        outcome = Outcome(owner, None, "no_rule", f"no rule of {decision} matched: "
                          f"{owner or 'nobody'} keeps it (the current owner)")
    else:
        rule = _rule(decision, row)
        outcome = (_continuity(event, task, rule, owner, passed) or _person(event.session, rule, event.now)
                   or _team(event.session, rule, event.now, owner))
    task.assignee, task.team = outcome.assignee, outcome.team
    event.session.add(task)
    _record(event, task, result, row, outcome, owner, passed)
    return outcome.assignee


def _evaluate(event: ChangeEvent, task: HumanTask, decision: str, sources: Mapping[str, str]) -> DecisionResult:
    row = event.instance
    names: dict[str, Any] = {**row.data, "customer_tier": row.customer_tier}
    if names.get("amount") is None:
        names["amount"] = row.amount
    for key, value in (("workflow", row.workflow), ("stage", task.stage), ("task", task.task_spec)):
        names.setdefault(key, value)
    try:
        result = evaluate_decision(sources, decision, names)
    except SpiffError as err:
        raise WorkflowFailed(f"the assignment decision '{decision}' failed: {err}") from err
    if result.hit_policy == "UNIQUE" and len(result.matches) > 1:
        a, b = result.matches[0], result.matches[1]
        raise WorkflowFailed(
            f"the assignment rules are ambiguous: decision '{decision}' has hit policy UNIQUE, but rows {a.row} "
            f"({_cells(a)}) and {b.row} ({_cells(b)}) both match. Nothing was changed; the process owner must "
            "make the rows exclude each other (funnel validate lists such rows) or use hit policy COLLECT")
    return result


def _cells(row: RuleMatch) -> str:
    return cells_text(row.inputs)


def _rule(decision: str, row: RuleMatch) -> Rule:
    """The row's outputs, or a refusal naming the row and the value to fix."""
    out = {k: (None if v in ("", None) else v) for k, v in row.outputs.items()}
    where = f"decision '{decision}' row {row.row}"
    strategy = out.get("strategy") or "round_robin"
    if strategy not in STRATEGIES:
        raise WorkflowFailed(f"{where} gives strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    keep = out.get("keep_owner")
    if keep is not None and not isinstance(keep, bool):
        raise WorkflowFailed(f"{where} gives keep_owner {keep!r}: use True, False or leave it empty")
    texts = {k: out.get(k) for k in ("team", "skill", "person")}
    for key, value in texts.items():
        if value is not None and not isinstance(value, str):
            raise WorkflowFailed(f"{where} gives {key} {value!r}: it must be a text (a {key} name)")
    if texts["team"] is None and texts["person"] is None:
        raise WorkflowFailed(f"{where} names neither a team nor a person: fill in its team")
    return Rule(texts["team"], strategy, texts["skill"], texts["person"], keep is not False)


# ---------------------------------------------------------------- who


def _user(session: Session, login: str | None) -> User | None:
    if not login:
        return None
    return session.exec(select(User).where(User.login == login)).first()


def _why_not(session: Session, user: User, now: datetime, *, skill: str | None, capacity: bool) -> str | None:
    assert user.id is not None
    away = absent_until(session, [user.id], now).get(user.id)
    load = open_counts(session, [user.login])[user.login] if capacity else None
    return unavailable(user, absent=away, skill=skill, load=load)


def _continuity(event: ChangeEvent, task: HumanTask, rule: Rule, owner: str | None,
                passed: list[Candidate]) -> Outcome | None:
    """Keep the work with whoever already has it: a manual choice, a returning stage, the owner in the team."""
    if not rule.keep_owner:
        return None
    session = event.session
    created = event.kind == "created"
    named = owner if created and owner != event.actor else None
    manual = _manual_owner(session, event.instance.id or 0)
    in_team = owner if not created and _member(session, rule.team, owner) else None
    options = [(named, "named", None, "they were named as assignee when it was created"),
               (manual if manual == owner else None, "manual", None, "a manager chose them"),
               (_previous_assignee(session, task), "returning", rule.skill, "they worked this stage before"),
               (in_team, "owner", rule.skill, f"they own it and are in team {rule.team}")]
    for login, basis, skill, why in options:
        user = _user(session, login)
        if user is None:
            continue
        blocked = _why_not(session, user, event.now, skill=skill, capacity=False)
        if blocked is None:
            return Outcome(user.login, rule.team, basis, f"{user.login} keeps it: {why}",
                           [Candidate(user.login, "chosen", why)])
        passed.append(Candidate(user.login, "passed", f"{why}, but {blocked}"))
    return None


def _person(session: Session, rule: Rule, now: datetime) -> Outcome | None:
    if rule.person is None:
        return None
    user = _user(session, rule.person)
    if user is None:
        return None
    if _why_not(session, user, now, skill=rule.skill, capacity=True) is None:
        return Outcome(user.login, rule.team, "person", f"the rule names {user.login}",
                       [Candidate(user.login, "chosen", "named by the rule")])
    return None


def _team(session: Session, rule: Rule, now: datetime, owner: str | None) -> Outcome:
    named = _named_person_note(session, rule, now) if rule.person else ""
    if rule.team is None:
        return Outcome(owner, None, "unknown_team", f"{named}; the rule names no team, so {owner} keeps it",
                       alert=f"{named} and the rule names no team to fall back on")
    team = session.exec(select(Team).where(Team.name == rule.team)).first()
    if team is None:
        return Outcome(owner, None, "unknown_team", f"team {rule.team} does not exist, so {owner} keeps it",
                       alert=f"the assignment rule names team '{rule.team}', which does not exist: "
                             "create the team or fix the rule", alert_team=rule.team)
    chosen = pick(session, team, now=now, strategy=rule.strategy, skill=rule.skill)
    extra = [Candidate(rule.person, "passed", named)] if rule.person else []
    if chosen.assignee is None:
        reasons = "; ".join(f"{c.login}: {c.reason}" for c in chosen.candidates) or "the team has no members"
        return Outcome(None, team.name, "queued", f"nobody in team {team.name} can take it ({reasons}): it "
                       "waits in the team's unassigned queue", extra + chosen.candidates,
                       alert=f"nobody in team {team.name} can take the task ({reasons})")
    return Outcome(chosen.assignee, team.name, "strategy",
                   f"{chosen.assignee} gets it: {chosen.candidates[0].reason}", extra + chosen.candidates)


def _named_person_note(session: Session, rule: Rule, now: datetime) -> str:
    user = _user(session, rule.person)
    if user is None:
        return f"the rule names {rule.person}, who is not a user"
    return f"the rule names {user.login}, who is {_why_not(session, user, now, skill=rule.skill, capacity=True)}"


def _member(session: Session, team: str | None, login: str | None) -> bool:
    if not team or not login:
        return False
    stmt = (select(TeamMember.id).join(Team, col(Team.id) == col(TeamMember.team_id))
            .join(User, col(User.id) == col(TeamMember.user_id)).where(Team.name == team, User.login == login))
    return session.exec(stmt).first() is not None


def _manual_owner(session: Session, instance_id: int) -> str | None:
    """Whom the last manual reassignment chose (the caller checks they still own the instance)."""
    stmt = (select(AuditEvent).where(AuditEvent.instance_id == instance_id, AuditEvent.kind == "reassigned")
            .order_by(sa.desc(col(AuditEvent.id))).limit(1))
    last = session.exec(stmt).first()
    return (last.changes.get("assignee") or {}).get("to") if last else None


def _previous_assignee(session: Session, task: HumanTask) -> str | None:
    """Who had this same task (stage) of this instance before: a returning stage goes back to them."""
    stmt = (select(HumanTask.assignee).where(HumanTask.instance_id == task.instance_id,
                                             HumanTask.task_spec == task.task_spec, HumanTask.status != "ready",
                                             col(HumanTask.assignee).is_not(None))
            .order_by(sa.desc(col(HumanTask.id))).limit(1))
    return session.exec(stmt).first()


# ---------------------------------------------------------------- explanation


def _record(event: ChangeEvent, task: HumanTask, result: DecisionResult, row: RuleMatch | None,
            outcome: Outcome, owner: str | None, passed: list[Candidate]) -> None:
    """Write the explanation to the history (and an alert when a person must act)."""
    chosen = [c for c in outcome.candidates if c.outcome == "chosen"]
    others = [c for c in outcome.candidates if c.outcome != "chosen"]
    candidates = [c.__dict__ for c in chosen + passed + others]
    detail = {
        "task": {"id": task.task_uuid, "name": task.name, "stage": task.stage},
        "decision": result.decision_id, "hit_policy": result.hit_policy, "inputs": result.values,
        "rule": None if row is None else {"row": row.row, "id": row.rule_id, "description": row.description,
                                          "cells": row.inputs, "outputs": row.outputs},
        "also_matched": [m.row for m in result.matches[1:]],
        "skipped_rows": [{"row": n, "reason": why} for n, why in result.skipped],
        "basis": outcome.basis, "assignee": outcome.assignee, "team": outcome.team,
        "candidates": candidates,
    }
    if row is not None:
        detail.update(strategy=row.outputs.get("strategy") or "round_robin", skill=row.outputs.get("skill") or None)
    detail["note"] = outcome.note
    assert event.instance.id is not None
    # no `reason`: engine.audit_text renders the paragraph from the explanation when the history is read
    event.session.add(AuditEvent(
        instance_id=event.instance.id, at=event.now, actor=SYSTEM_ACTOR, kind=ASSIGNED,
        from_stage=None, to_stage=task.stage, reason=None, row_version=event.instance.row_version,
        changes={"assignee": {"from": owner, "to": outcome.assignee},
                 "team": {"from": None, "to": outcome.team}, "explanation": detail},
    ))
    if outcome.alert:
        _alert(event, task, outcome, assignment_summary(detail))


def _alert(event: ChangeEvent, task: HumanTask, outcome: Outcome, summary: str) -> None:
    name = outcome.team or outcome.alert_team
    team = event.session.exec(select(Team).where(Team.name == name)).first() if name else None
    manager = event.session.get(User, team.manager_id) if team and team.manager_id else None
    event.session.add(AssignmentAlert(
        team=name, manager=manager.login if manager else None, instance_id=event.instance.id or 0,
        task_uuid=task.task_uuid, reason=f"{outcome.alert}. {summary}", created_at=event.now,
    ))


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Explanation:
    """One assignment as a manager reads it: when, which task, who, on what basis, and the full why."""

    at: datetime
    task: str | None
    stage: str | None
    assignee: str | None
    team: str | None
    basis: str
    summary: str
    detail: dict[str, Any]


def explanations(engine: Engine, instance_id: int) -> list[Explanation]:
    """Every assignment of an instance, oldest first (the same entries Funnel.history holds)."""
    with Session(engine) as session:
        stmt = (select(AuditEvent).where(AuditEvent.instance_id == instance_id, AuditEvent.kind == ASSIGNED)
                .order_by(col(AuditEvent.id)))
        out = []
        for event in session.exec(stmt):
            detail = event.changes.get("explanation", {})
            out.append(Explanation(event.at, detail.get("task", {}).get("name"), event.to_stage,
                                   detail.get("assignee"), detail.get("team"), detail.get("basis", ""),
                                   reason_of(event) or "", detail))
        return out

"""Factories for people and assignment tests: users, teams, rosters, and workflows with assignment rules."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import people
from engine.instances import Funnel
from engine.models import AuditEvent, HumanTask
from engine.models.people import AssignmentAlert
from engine.people import TeamView, UserView
from tests.factories import FUNNEL_STAGE_DATA, linear_workflow

OPPORTUNITY = FUNNEL_STAGE_DATA[0]


def user(engine: Engine, login: str, **fields: Any) -> UserView:
    """A user with sensible defaults; any field can be overridden."""
    fields.setdefault("display_name", login.replace(".", " ").title())
    fields.setdefault("email", f"{login}@example.com")
    return people.create_user(engine, login, **fields)


def team(engine: Engine, name: str, members: Sequence[str], *, manager: str | None = None,
         skills: dict[str, Sequence[str]] | None = None, **user_fields: Any) -> TeamView:
    """A team whose members (created if missing) are in this order; `skills` maps login -> skills."""
    known = {u.login for u in people.list_users(engine)}
    for login in [*members, *([manager] if manager else [])]:
        if login not in known:
            roles = ("manager",) if login == manager else ("rep",)
            user(engine, login, roles=roles, skills=(skills or {}).get(login, ()), **user_fields)
            known.add(login)
    return people.create_team(engine, name, title=name.replace("_", " ").title(), manager=manager,
                              members=members)


def sales_roster(engine: Engine, *, now: datetime) -> None:
    """The shipped demo roster (two regional teams, key accounts, service desk; ivan inactive, erin absent)."""
    people.seed_roster(engine, now=now)


def away(engine: Engine, login: str, now: datetime, *, days: float = 7) -> None:
    people.add_absence(engine, login, starts_at=now - timedelta(hours=1), ends_at=now + timedelta(days=days))


def opportunity(funnel: Funnel, *, region: str | None = "north", tier: str = "B", actor: str = "alice",
                **data: Any) -> Any:
    """Start a sales opportunity that the shipped rules route by region (and tier and amount)."""
    return funnel.start("sales_funnel", {**OPPORTUNITY, "region": region, **data}, actor=actor, customer_tier=tier)


def assigned_events(funnel: Funnel, instance_id: int) -> list[AuditEvent]:
    return [e for e in funnel.history(instance_id) if e.kind == "assigned"]


def open_tasks(engine: Engine, instance_id: int) -> list[HumanTask]:
    with Session(engine) as session:
        stmt = select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == "ready")
        return list(session.exec(stmt.order_by(col(HumanTask.id))))


def alerts(engine: Engine) -> list[AssignmentAlert]:
    with Session(engine) as session:
        return list(session.exec(select(AssignmentAlert).order_by(col(AssignmentAlert.id))))


# ---------------------------------------------------------------- workflow files with assignment rules

DMN_HEAD = """<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="defs_{id}" name="{id}"
             namespace="http://example.com/dmn">
  <decision id="{id}" name="{id}">
    <decisionTable id="table_{id}" hitPolicy="{policy}">
"""
OUTPUTS = ("team", "strategy", "skill", "person", "keep_owner")


def decision(decision_id: str, inputs: Sequence[str], rows: Sequence[tuple[Sequence[str], dict[str, str]]], *,
             policy: str = "COLLECT") -> bytes:
    """A DMN decision over `inputs` (expressions) whose rows are (cells, outputs as Python texts)."""
    parts = [DMN_HEAD.format(id=decision_id, policy=policy)]
    for n, expression in enumerate(inputs):
        parts.append(f'      <input id="in{n}" label="{expression}"><inputExpression id="in{n}_e">'
                     f"<text>{expression}</text></inputExpression></input>\n")
    parts.extend(f'      <output id="out_{o}" name="{o}"/>\n' for o in OUTPUTS)
    for r, (cells, outputs) in enumerate(rows, start=1):
        parts.append(f'      <rule id="r{r}">\n')
        parts.extend(f'        <inputEntry id="r{r}_i{n}"><text>{_xml(c)}</text></inputEntry>\n'
                     for n, c in enumerate(cells))
        parts.extend(f'        <outputEntry id="r{r}_{o}"><text>{_xml(outputs.get(o, ""))}</text></outputEntry>\n'
                     for o in OUTPUTS)
        parts.append("      </rule>\n")
    parts.append("    </decisionTable>\n  </decision>\n</definitions>\n")
    return "".join(parts).encode()


def _xml(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def assigned_workflow(*, pid: str = "routed", decision_id: str = "assign_routed", stages: int = 2,
                      stage_decisions: dict[int, str] | None = None, backward: str = "with-reason") -> bytes:
    """A linear workflow whose process declares `decision_id`; `stage_decisions` overrides per stage."""
    doc = linear_workflow(pid=pid, title=pid.title(), stages=stages, backward=backward)
    doc = doc.replace(b"</funnel:workflow>",
                      f'<funnel:assignment decision="{decision_id}"/></funnel:workflow>'.encode())
    for order, name in (stage_decisions or {}).items():
        head = f'<funnel:stage name="Stage {order}" order="{order}" probability="0.5">'.encode()
        doc = doc.replace(head, head + f'<funnel:assignment decision="{name}"/>'.encode())
    return doc


def workflows_dir(tmp: Path, bpmn: bytes, dmn: dict[str, bytes], *, name: str = "routed") -> Path:
    """A folder holding one workflow and its DMN files, as the engine loads them."""
    folder = tmp / "workflows"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.bpmn").write_bytes(bpmn)
    for file, content in dmn.items():
        (folder / file).write_bytes(content)
    return folder

"""Who is told when an SLA level fires or a timer chases, and the e-mails they get (through the outbox).

Recipients come from the people tables (engine.people): `assignee` is whoever holds the clock's task
(a per-task clock) or the instance; `manager` the manager of that task's team, else of the teams the
assignee belongs to; `role:<role>` every active user with that role (the shipped policies tell
`role:admin` as the head of service / sales); `user:<login>` one person. A login that is not an
active user with an e-mail address is reported as unreachable in the audit entry, never guessed.
Each person gets their own e-mail (their time zone), deduplicated by the outbox on a key naming
the reason, so a repeated firing adds nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from engine.calendar import format_business
from engine.models import HumanTask, Instance
from engine.models.customers import Customer
from engine.models.people import Team, TeamMember, User
from engine.models.sla import SlaClock
from engine.sla_ledger import Figures
from engine.sla_policy import Level
from notifications.outbox import enqueue
from notifications.render import Recipient, link, render

ASSIGNEE, MANAGER = "assignee", "manager"
KINDS = {"service_request": "service request", "sales_funnel": "opportunity", "routing_slip": "routing slip",
         "project_funding": "project"}


def people_for(session: Session, tokens: Sequence[str], *, instance: Instance,
               task: HumanTask | None) -> tuple[list[Recipient], list[str]]:
    """The people a level's `notify` names (in order, each once) and the names that reach nobody."""
    holder = task.assignee if task is not None and task.status == "ready" else instance.assignee
    found: list[Recipient] = []
    unreachable: list[str] = []
    for who in tokens:
        if who == ASSIGNEE:
            logins = [holder] if holder else []
        elif who == MANAGER:
            logins = _managers(session, task.team if task is not None else None, holder)
        elif who.startswith("role:"):
            stmt = select(User).where(col(User.active).is_(True)).order_by(col(User.login))
            logins = [u.login for u in session.exec(stmt) if who[5:] in u.roles]
        else:
            logins = [who.removeprefix("user:")]
        if not logins:
            unreachable.append(f"{who}: nobody")
        for login in logins:
            user = _user(session, login)
            if user is None or not user.active or not user.email:
                unreachable.append(f"{who}: {login} is not an active user with an e-mail address")
            elif user.login not in {r.login for r in found}:
                found.append(Recipient(user.login, user.display_name, user.email, user.time_zone))
    return found, unreachable


def _user(session: Session, login: str | None) -> User | None:
    return session.exec(select(User).where(User.login == login)).first() if login else None


def _managers(session: Session, team: str | None, holder: str | None) -> list[str]:
    """The manager of the task's team, else of each team the holder belongs to (never the holder)."""
    if team:
        teams = list(session.exec(select(Team).where(Team.name == team)))
    else:
        user = _user(session, holder)
        stmt = (select(Team).join(TeamMember, col(TeamMember.team_id) == col(Team.id))
                .where(TeamMember.user_id == (user.id if user else -1)).order_by(col(Team.name)))
        teams = list(session.exec(stmt))
    logins = []
    for row in teams:
        manager = session.get(User, row.manager_id) if row.manager_id else None
        if manager is not None and manager.login != holder and manager.login not in logins:
            logins.append(manager.login)
    return logins


def item(session: Session, instance: Instance, *, title: str, base_url: str) -> dict[str, Any]:
    """The `item` of every template: what it is, what people call it, where it is."""
    data = instance.data
    customer = customer_name(session, instance)
    topic = next((str(data[k]) for k in ("title", "need", "description") if data.get(k)), None)
    named = " - ".join(x for x in ((None if data.get("title") else customer), topic) if x)
    return {"kind": KINDS.get(instance.workflow, title.lower()), "title": (named or f"{title} {instance.id}")[:120],
            "ref": f"instance {instance.id}", "url": link(base_url, f"/api/instances/{instance.id}"),
            "stage": instance.stage}


def customer_name(session: Session, instance: Instance) -> str | None:
    if instance.data.get("customer_name"):
        return str(instance.data["customer_name"])
    row = session.get(Customer, instance.customer_id) if instance.customer_id else None
    return row.name if row else None


def send_escalation(session: Session, *, instance: Instance, clock: SlaClock, level: Level, figures: Figures,
                    deadline: datetime, recipients: Sequence[Recipient], now: datetime, title: str,
                    base_url: str) -> int:
    """One e-mail per recipient for one fired level; returns how many were added to the outbox."""
    assert figures.remaining is not None
    left = figures.remaining
    added = 0
    for person in recipients:
        context = {
            "recipient": {"name": person.name, "email": person.email, "time_zone": person.time_zone},
            "item": item(session, instance, title=title, base_url=base_url),
            "customer": {"name": customer_name(session, instance), "tier": instance.customer_tier},
            "sla": {"name": clock.title, "deadline": deadline, "business_seconds_left": left.total_seconds(),
                    "business_left": format_business(left), "level": level.name,
                    "target_hours": (figures.target.total_seconds() / 3600) if figures.target else None},
            "level": level.severity,
            "also_told": [r.name for r in recipients if r.login != person.login],
        }
        mail = render("escalation", context)
        added += enqueue(session, dedupe_key=f"sla:{clock.id}:{figures.cycle}:{level.name}:{person.login}",
                         to=person.email, subject=mail.subject, text=mail.text, html=mail.html, created_at=now,
                         kind="escalation", ref=f"instance:{instance.id}")
    return added


def send_chase(session: Session, *, instance: Instance, timer_task: str, tasks: Sequence[HumanTask], chase: int,
               now: datetime, title: str, base_url: str) -> list[dict[str, Any]]:
    """A reminder per open task of the chased activity to whoever holds it; what was sent to whom."""
    author = _user(session, instance.created_by)
    sender = author.display_name if author else instance.created_by
    sent = []
    for task in tasks:
        department = task.name.partition(": ")[2] or task.name
        holders = [task.assignee] if task.assignee else _managers(session, task.team, None)
        people = [u for login in holders if (u := _user(session, login)) is not None and u.active and u.email]
        for person in people:
            context = {
                "recipient": {"name": person.display_name, "email": person.email, "time_zone": person.time_zone},
                "item": item(session, instance, title=title, base_url=base_url),
                "department": department, "since": task.created_at, "chase": chase, "sender": sender,
            }
            mail = render("chase", context)
            enqueue(session, dedupe_key=f"chase:{instance.id}:{timer_task}:{task.task_uuid}:{person.login}",
                    to=person.email, subject=mail.subject, text=mail.text, html=mail.html, created_at=now,
                    kind="chase", ref=f"instance:{instance.id}")
        sent.append({"task": task.task_uuid, "department": department, "to": [p.login for p in people],
                     "unreachable": [h for h in holders if h not in {p.login for p in people}]})
    return sent

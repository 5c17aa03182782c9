"""Who is told when an SLA level fires or a timer chases, and the e-mails they get (through the outbox).

Recipients come from the people tables (engine.people), read through engine.directory: `assignee` is
whoever holds the clock's task (a per-task clock) or the instance; `manager` the manager of that task's
team, else of the teams the assignee belongs to; `role:<role>` every active user with that role (the
shipped policies tell `role:admin` as the head of service / sales); `user:<login>` one person. A login that is not an
active user with an e-mail address is reported as unreachable in the audit entry, never guessed.
Each person gets their own e-mail (their time zone), deduplicated by the outbox on a key naming
the reason, so a repeated firing adds nothing. The e-mail is stored as its template and context and
rendered by the sender (notifications.outbox explains why).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlmodel import Session

from engine.calendar import format_business
from engine.directory import Directory
from engine.models import HumanTask, Instance
from engine.models.customers import Customer
from engine.models.sla import SlaClock
from engine.sla_ledger import Figures
from engine.sla_policy import Level
from notifications.outbox import enqueue
from notifications.render import Recipient, link

KINDS = {"service_request": "service request", "sales_funnel": "opportunity", "routing_slip": "routing slip",
         "project_funding": "project"}


def people_for(session: Session, tokens: Sequence[str], *, instance: Instance,
               task: HumanTask | None) -> tuple[list[Recipient], list[str]]:
    """The people a level's `notify` names (in order, each once) and the names that reach nobody."""
    holder = task.assignee if task is not None and task.status == "ready" else instance.assignee
    return Directory(session).resolve(tokens, holder=holder, team=task.team if task is not None else None)


def item(session: Session, instance: Instance, *, title: str, base_url: str) -> dict[str, Any]:
    """The `item` of every template: what it is, what people call it, where it is."""
    return item_of(instance.data, instance_id=instance.id, workflow=instance.workflow, stage=instance.stage,
                   customer=customer_name(session, instance), title=title, base_url=base_url)


def item_of(data: dict[str, Any], *, instance_id: int | None, workflow: str, stage: str | None,
            customer: str | None, title: str, base_url: str) -> dict[str, Any]:
    """`item` from an instance's columns and its customer's name (a batch reads those in bulk)."""
    topic = next((str(data[k]) for k in ("title", "need", "description") if data.get(k)), None)
    named = " - ".join(x for x in ((None if data.get("title") else customer), topic) if x)
    return {"kind": KINDS.get(workflow, title.lower()), "title": (named or f"{title} {instance_id}")[:120],
            "ref": f"instance {instance_id}", "url": link(base_url, f"/api/instances/{instance_id}"),
            "stage": stage}


def customer_name(session: Session, instance: Instance) -> str | None:
    if instance.data.get("customer_name"):
        return str(instance.data["customer_name"])
    row = session.get(Customer, instance.customer_id) if instance.customer_id else None
    return row.name if row else None


def send_escalation(session: Session, *, instance: Instance, clock: SlaClock, level: Level, figures: Figures,
                    deadline: datetime, recipients: Sequence[Recipient], now: datetime, title: str,
                    base_url: str) -> int:
    """One e-mail per recipient for one fired level; returns how many were added to the outbox."""
    if not recipients:
        return 0
    about = item(session, instance, title=title, base_url=base_url)
    customer = {"name": customer_name(session, instance), "tier": instance.customer_tier}
    added = 0
    for mail in escalation_mails(clock_id=clock.id, clock_title=clock.title, level=level, figures=figures,
                                 deadline=deadline, recipients=recipients, item=about, customer=customer,
                                 instance_id=instance.id, now=now):
        added += enqueue(session, **mail)
    return added


def escalation_mails(*, clock_id: int | None, clock_title: str, level: Level, figures: Figures, deadline: datetime,
                     recipients: Sequence[Recipient], item: dict[str, Any], customer: dict[str, Any],
                     instance_id: int | None, now: datetime) -> list[dict[str, Any]]:
    """The escalation e-mails of one fired level, one per recipient, as notifications.outbox.enqueue takes them."""
    assert figures.remaining is not None
    left = figures.remaining
    sla = {"name": clock_title, "deadline": deadline, "business_seconds_left": left.total_seconds(),
           "business_left": format_business(left), "level": level.name,
           "target_hours": (figures.target.total_seconds() / 3600) if figures.target else None}
    mails = []
    for person in recipients:
        context = {
            "recipient": {"name": person.name, "email": person.email, "time_zone": person.time_zone},
            "item": item, "customer": customer, "sla": sla, "level": level.severity,
            "also_told": [r.name for r in recipients if r.login != person.login],
        }
        mails.append(dict(dedupe_key=f"sla:{clock_id}:{figures.cycle}:{level.name}:{person.login}", to=person.email,
                          template="escalation", context=context, created_at=now, kind="escalation",
                          ref=f"instance:{instance_id}"))
    return mails


def send_chase(session: Session, *, instance: Instance, timer_task: str, tasks: Sequence[HumanTask], chase: int,
               now: datetime, title: str, base_url: str) -> list[dict[str, Any]]:
    """A reminder per open task of the chased activity to whoever holds it; what was sent to whom."""
    directory = Directory(session)
    author = directory.user(instance.created_by)
    sender = author.display_name if author else instance.created_by
    sent = []
    for task in tasks:
        department = task.name.partition(": ")[2] or task.name
        holders = [task.assignee] if task.assignee else directory.managers(task.team, None)
        people = [u for login in holders if (u := directory.user(login)) is not None and u.active and u.email]
        for person in people:
            context = {
                "recipient": {"name": person.display_name, "email": person.email, "time_zone": person.time_zone},
                "item": item(session, instance, title=title, base_url=base_url),
                "department": department, "since": task.created_at, "chase": chase, "sender": sender,
            }
            enqueue(session, dedupe_key=f"chase:{instance.id}:{timer_task}:{task.task_uuid}:{person.login}",
                    to=person.email, template="chase", context=context, created_at=now, kind="chase",
                    ref=f"instance:{instance.id}")
        sent.append({"task": task.task_uuid, "department": department, "to": [p.login for p in people],
                     "unreachable": [h for h in holders if h not in {p.login for p in people}]})
    return sent

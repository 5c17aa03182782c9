"""Assignment alerts (a task nobody in the pool could take) become e-mails to the team's manager.

notifications must not import engine, so the few columns read here are declared as lightweight
`sa.table` constructs: the dependency on the engine's tables is explicit and checked by the tests
(which run on the real migrated schema), and nothing depends on import order. Reflecting at run
time would cost a round trip per call, and having the caller load the rows would push template
knowledge (who is told, in which time zone) into the engine.

Once: an alert is claimed with `FOR UPDATE SKIP LOCKED` on PostgreSQL (SQLite serialises writers),
each recipient's message has the dedupe key `assignment_alert:<id>:<login>`, and `delivered_at`
is set in the same transaction (it means "handed to the outbox", which never loses a message).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from notifications import outbox
from notifications.models import JSONList, UTCDateTime
from notifications.render import Recipient, link

log = logging.getLogger(__name__)
FALLBACK_ROLES = ("admin", "process_owner")  # told when the team has no manager (or does not exist)
TITLE_KEYS = ("title", "customer_name", "subject", "need", "category")

_alert = sa.table("assignment_alert", sa.column("id", sa.Integer), sa.column("team", sa.String),
                  sa.column("manager", sa.String), sa.column("instance_id", sa.Integer),
                  sa.column("task_uuid", sa.String), sa.column("reason", sa.Text),
                  sa.column("created_at", UTCDateTime()), sa.column("delivered_at", UTCDateTime()))
_user = sa.table("app_user", sa.column("login", sa.String), sa.column("display_name", sa.String),
                 sa.column("email", sa.String), sa.column("time_zone", sa.String),
                 sa.column("roles", JSONList), sa.column("active", sa.Boolean))
_team = sa.table("team", sa.column("name", sa.String), sa.column("title", sa.String))
_task = sa.table("human_task", sa.column("instance_id", sa.Integer), sa.column("task_uuid", sa.String),
                 sa.column("name", sa.String), sa.column("stage", sa.String))
_instance = sa.table("instance", sa.column("id", sa.Integer), sa.column("workflow", sa.String),
                     sa.column("stage", sa.String), sa.column("data", JSONList))


def enqueue_assignment_alerts(session: Session, now: datetime, base_url: str, *, limit: int = 100) -> int:
    """Turn undelivered assignment alerts into outbox messages in the caller's transaction; messages added."""
    stmt = sa.select(_alert).where(_alert.c.delivered_at.is_(None)).order_by(_alert.c.id).limit(limit)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    added = 0
    for alert in session.execute(stmt).mappings().all():
        recipients = _recipients(session, alert["manager"])
        if not recipients:
            log.warning("assignment alert %s: no manager and no admin to tell; it stays pending", alert["id"])
            continue
        for person in recipients:
            added += outbox.enqueue(
                session, dedupe_key=f"assignment_alert:{alert['id']}:{person.login}", to=person.email,
                template="assignment_alert", context=_context(session, alert, person, base_url), created_at=now,
                kind="assignment_alert", ref=f"instance:{alert['instance_id']}")
        session.execute(sa.update(_alert).where(_alert.c.id == alert["id"]).values(delivered_at=now))
    return added


def _recipients(session: Session, manager: str | None) -> list[Recipient]:
    """The team's manager while active; else (no manager, or they left) every active admin / process owner."""
    active = session.execute(sa.select(_user).where(_user.c.active.is_(True)).order_by(_user.c.login)).mappings()
    users = [(Recipient(u["login"], u["display_name"], u["email"], u["time_zone"]), u["roles"] or [])
             for u in active]
    mine = [r for r, _ in users if manager and r.login == manager]
    return mine or [r for r, roles in users if any(role in FALLBACK_ROLES for role in roles)]


def _context(session: Session, alert: Any, person: Recipient, base_url: str) -> dict[str, Any]:
    """What the assignment_alert template needs (templates/README.md)."""
    inst = session.execute(sa.select(_instance).where(_instance.c.id == alert["instance_id"])).mappings().first()
    task = None
    if alert["task_uuid"]:
        task = session.execute(sa.select(_task).where(_task.c.instance_id == alert["instance_id"],
                                                      _task.c.task_uuid == alert["task_uuid"])).mappings().first()
    team = None
    if alert["team"]:
        team = session.execute(sa.select(_team).where(_team.c.name == alert["team"])).mappings().first()
    data = (inst["data"] if inst else None) or {}
    workflow = inst["workflow"] if inst else "instance"
    parts = [str(data[k]) for k in TITLE_KEYS if data.get(k)][:2]
    return {
        "recipient": {"name": person.name, "email": person.email, "time_zone": person.time_zone},
        "item": {"kind": workflow.replace("_", " "), "title": ": ".join(parts) or f"{workflow} {alert['instance_id']}",
                 "ref": f"instance {alert['instance_id']}", "stage": inst["stage"] if inst else None,
                 "url": link(base_url, f"/api/instances/{alert['instance_id']}")},
        "team": {"name": alert["team"], "title": team["title"] if team else None},
        "task": {"name": task["name"] if task else "(a task)", "stage": task["stage"] if task else None},
        "reason": alert["reason"],
        "created_at": alert["created_at"],
    }

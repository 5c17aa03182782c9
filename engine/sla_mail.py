"""Who is told when an SLA level fires or a timer chases, and the e-mails they get (through the outbox).

Recipients come from the people tables (engine.people): `assignee` is whoever holds the clock's task
(a per-task clock) or the instance; `manager` the manager of that task's team, else of the teams the
assignee belongs to; `role:<role>` every active user with that role (the shipped policies tell
`role:admin` as the head of service / sales); `user:<login>` one person. A login that is not an
active user with an e-mail address is reported as unreachable in the audit entry, never guessed.
Each person gets their own e-mail (their time zone), deduplicated by the outbox on a key naming
the reason, so a repeated firing adds nothing. The e-mail is stored as its template and context and
rendered by the sender (notifications.outbox explains why).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
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
from notifications.render import Recipient, link

ASSIGNEE, MANAGER = "assignee", "manager"
KINDS = {"service_request": "service request", "sales_funnel": "opportunity", "routing_slip": "routing slip",
         "project_funding": "project"}


def people_for(session: Session, tokens: Sequence[str], *, instance: Instance,
               task: HumanTask | None) -> tuple[list[Recipient], list[str]]:
    """The people a level's `notify` names (in order, each once) and the names that reach nobody."""
    holder = task.assignee if task is not None and task.status == "ready" else instance.assignee
    return Directory(session).resolve(tokens, holder=holder, team=task.team if task is not None else None)


def _user(session: Session, login: str | None) -> User | None:
    return session.exec(select(User).where(User.login == login)).first() if login else None


def _managers(session: Session, team: str | None, holder: str | None) -> list[str]:
    """The manager of the task's team, else of each team the holder belongs to (never the holder)."""
    return Directory(session).managers(team, holder)


class Directory:
    """The people tables as escalations read them, each user, team and role looked up once per transaction.

    A batch of escalations names the same few people again and again; `prefetch` loads a batch's holders
    and teams in a few queries, and anything else is looked up (once) when first asked for.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._users: dict[str, User | None] = {}  # by login
        self._by_id: dict[int, User | None] = {}
        self._named: dict[str, list[Team]] = {}  # team name -> the team (names are unique)
        self._member_of: dict[int, list[Team]] = {}  # user id -> their teams by name
        self._active: list[User] | None = None

    def prefetch(self, logins: Iterable[str | None], teams: Iterable[str | None]) -> None:
        """Load these users, their teams, these teams and all those teams' managers in a few queries."""
        wanted = {x for x in logins if x} - self._users.keys()
        if wanted:
            for user in self.session.exec(select(User).where(col(User.login).in_(wanted))):
                self._remember(user)
            for login in wanted:
                self._users.setdefault(login, None)
        ids = {u.id for u in (self._users[x] for x in wanted) if u is not None and u.id is not None}
        ids -= self._member_of.keys()
        if ids:
            stmt = (select(TeamMember.user_id, Team).join(Team, col(TeamMember.team_id) == col(Team.id))
                    .where(col(TeamMember.user_id).in_(ids)).order_by(col(Team.name)))
            for user_id in ids:
                self._member_of[user_id] = []
            for user_id, team in self.session.exec(stmt):
                self._member_of[user_id].append(team)
        names = {x for x in teams if x} - self._named.keys()
        if names:
            for name in names:
                self._named[name] = []
            for team in self.session.exec(select(Team).where(col(Team.name).in_(names))):
                self._named[team.name].append(team)
        known = [t for found in (*self._named.values(), *self._member_of.values()) for t in found]
        managers = {t.manager_id for t in known if t.manager_id} - self._by_id.keys()
        if managers:
            for user in self.session.exec(select(User).where(col(User.id).in_(managers))):
                self._remember(user)
            for user_id in managers:
                self._by_id.setdefault(user_id, None)

    def resolve(self, tokens: Sequence[str], *, holder: str | None,
                team: str | None) -> tuple[list[Recipient], list[str]]:
        """The people `tokens` name (in order, each once) and the names that reach nobody (see people_for)."""
        found: list[Recipient] = []
        unreachable: list[str] = []
        for who in tokens:
            if who == ASSIGNEE:
                logins = [holder] if holder else []
            elif who == MANAGER:
                logins = self.managers(team, holder)
            elif who.startswith("role:"):
                logins = self.with_role(who[5:])
            else:
                logins = [who.removeprefix("user:")]
            if not logins:
                unreachable.append(f"{who}: nobody")
            for login in logins:
                user = self.user(login)
                if user is None or not user.active or not user.email:
                    unreachable.append(f"{who}: {login} is not an active user with an e-mail address")
                elif user.login not in {r.login for r in found}:
                    found.append(Recipient(user.login, user.display_name, user.email, user.time_zone))
        return found, unreachable

    def user(self, login: str | None) -> User | None:
        if not login:
            return None
        if login not in self._users:
            found = self.session.exec(select(User).where(User.login == login)).first()
            self._users[login] = found
            if found is not None:
                self._remember(found)
        return self._users[login]

    def managers(self, team: str | None, holder: str | None) -> list[str]:
        """The manager of the task's team, else of each team the holder belongs to (never the holder)."""
        teams = self._team_named(team) if team else self._teams_of(holder)
        logins: list[str] = []
        for row in teams:
            manager = self._user_by_id(row.manager_id) if row.manager_id else None
            if manager is not None and manager.login != holder and manager.login not in logins:
                logins.append(manager.login)
        return logins

    def with_role(self, role: str) -> list[str]:
        """The logins of every active user with `role`, by login."""
        if self._active is None:
            stmt = select(User).where(col(User.active).is_(True)).order_by(col(User.login))
            self._active = list(self.session.exec(stmt))
            for user in self._active:
                self._remember(user)
        return [u.login for u in self._active if role in u.roles]

    def _remember(self, user: User) -> None:
        self._users[user.login] = user
        if user.id is not None:
            self._by_id[user.id] = user

    def _user_by_id(self, user_id: int) -> User | None:
        if user_id not in self._by_id:
            found = self.session.get(User, user_id)
            self._by_id[user_id] = found
            if found is not None:
                self._remember(found)
        return self._by_id[user_id]

    def _team_named(self, name: str) -> list[Team]:
        if name not in self._named:
            self._named[name] = list(self.session.exec(select(Team).where(Team.name == name)))
        return self._named[name]

    def _teams_of(self, holder: str | None) -> list[Team]:
        user = self.user(holder)
        user_id = user.id if user is not None and user.id is not None else -1
        if user_id not in self._member_of:
            stmt = (select(Team).join(TeamMember, col(TeamMember.team_id) == col(Team.id))
                    .where(TeamMember.user_id == user_id).order_by(col(Team.name)))
            self._member_of[user_id] = list(self.session.exec(stmt))
        return self._member_of[user_id]


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
            enqueue(session, dedupe_key=f"chase:{instance.id}:{timer_task}:{task.task_uuid}:{person.login}",
                    to=person.email, template="chase", context=context, created_at=now, kind="chase",
                    ref=f"instance:{instance.id}")
        sent.append({"task": task.task_uuid, "department": department, "to": [p.login for p in people],
                     "unreachable": [h for h in holders if h not in {p.login for p in people}]})
    return sent

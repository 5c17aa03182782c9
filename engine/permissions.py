"""Who may do what: the role rules the API and the CLI both apply, so they always agree.

Roles (engine.models.people.ROLES): reps act on their own work (instances and tasks assigned to
them, and unassigned tasks queued to their teams); managers also act on, see and reassign the work
of the teams they manage; the service desk works every ticket (service_request); process owners
publish definitions and read reports; admins may do everything. A refusal is `Forbidden` naming
the role or relation that would allow it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from engine.db import read_session
from engine.errors import Forbidden, InvalidInput, NotFound
from engine.models import Instance
from engine.models.people import Team, TeamMember, User
from engine.service_metrics import TICKET_WORKFLOWS  # the service desk's work
from engine.writes import OpenTask, load_instance_open

REP, MANAGER, SERVICE_DESK, PROCESS_OWNER, ADMIN = "rep", "manager", "service_desk", "process_owner", "admin"
QUEUES = ("mine", "team", "unassigned")


@dataclass(frozen=True)
class Principal:
    """An authenticated user as the rules see them: roles, the teams they are in and the teams they manage."""

    login: str
    roles: frozenset[str]
    teams: frozenset[str] = frozenset()
    managed_teams: frozenset[str] = frozenset()
    managed_members: frozenset[str] = frozenset()

    @property
    def is_admin(self) -> bool:
        return ADMIN in self.roles

    def has(self, *roles: str) -> bool:
        """True for admins and for anyone holding one of `roles`."""
        return self.is_admin or any(r in self.roles for r in roles)


@dataclass(frozen=True)
class Work:
    """What the rules need to know about one instance: its workflow, owner, creator and open tasks."""

    instance_id: int
    workflow: str
    assignee: str | None
    created_by: str
    tasks: tuple[OpenTask, ...] = ()  # (task id, assignee, team) of open tasks


@dataclass(frozen=True)
class Scope:
    """Which instances a list may show: everything, or those matching any of these relations (as check_view)."""

    everything: bool
    login: str  # instances they created
    logins: frozenset[str] = frozenset()  # instances or open tasks assigned to these people (self, managed members)
    queue_teams: frozenset[str] = frozenset()  # unassigned open tasks queued to these teams (their own)
    teams: frozenset[str] = frozenset()  # any open task of these teams (the ones they manage)
    workflows: frozenset[str] = field(default_factory=frozenset)  # every instance of these workflows (tickets)


_TEAM = Team.__table__  # type: ignore[attr-defined]
_MEMBER = TeamMember.__table__  # type: ignore[attr-defined]
_USER = User.__table__  # type: ignore[attr-defined]
# Built once: every API call runs these (who is calling, what is the instance), so they must cost little, and each
# is one round trip (a PostgreSQL statement is ~0.3 ms on loopback, more than the rest of the check).


def teams_of(user: Any) -> tuple[list[Any], Any]:
    """The teams a user (an id column or parameter) manages or belongs to: their columns (team_id, team_name,
    manages, member) and the condition that picks them, so a query can join them onto its user row."""
    memberships = sa.select(_MEMBER.c.team_id).where(_MEMBER.c.user_id == user)
    columns = [_TEAM.c.id.label("team_id"), _TEAM.c.name.label("team_name"),
               sa.func.coalesce(_TEAM.c.manager_id == user, False).label("manages"),
               _TEAM.c.id.in_(memberships).label("member")]
    return columns, sa.or_(_TEAM.c.manager_id == user, _TEAM.c.id.in_(memberships))


_TEAM_COLUMNS, _TEAM_OF_USER = teams_of(sa.bindparam("b_user"))
_TEAMS_OF = sa.select(*_TEAM_COLUMNS).where(_TEAM_OF_USER)
_MANAGED_PEOPLE = (sa.select(_USER.c.login).join(_MEMBER, _MEMBER.c.user_id == _USER.c.id)
                   .where(_MEMBER.c.team_id.in_(sa.bindparam("b_teams", expanding=True))))


def principal_of(session: Session, user: User) -> Principal:
    """Build the principal of a user row (roles, teams they belong to and manage, who is in those)."""
    conn = session.connection()
    return principal_from(conn, user, conn.execute(_TEAMS_OF, {"b_user": user.id}).all())


def principal_from(conn: sa.Connection, user: User, rows: Sequence[Any]) -> Principal:
    """The principal of a user whose teams were read with `teams_of`'s columns (rows without a team_id skipped);
    a manager's team members take one more query."""
    teams = [row for row in rows if row.team_id is not None]
    managed = [(row.team_id, row.team_name) for row in teams if row.manages]
    people: set[str] = set()
    if managed:
        people = set(conn.scalars(_MANAGED_PEOPLE, {"b_teams": [tid for tid, _ in managed]}))
    return Principal(login=user.login, roles=frozenset(user.roles),
                     teams=frozenset(row.team_name for row in teams if row.member),
                     managed_teams=frozenset(name for _, name in managed), managed_members=frozenset(people))


def principal_for(engine: Engine, login: str) -> Principal:
    """The principal of a login (the CLI acts as a named user this way)."""
    with read_session(engine) as session:
        user = session.exec(select(User).where(User.login == login)).first() if isinstance(login, str) else None
        if user is None:
            raise NotFound(f"no user with login {login!r}")
        return principal_of(session, user)


def guard(who: Principal, *, doing: str, task_id: str | None = None
          ) -> Callable[[Instance, tuple[OpenTask, ...]], None]:
    """check_work as a guard that the engine runs on the row it loads for the change (engine.instances.Guard).

    The check then sees exactly the version the change is written over (a reassignment between a separate
    check and the change's load cannot slip through), and the read is the change's own: one round trip less.
    """
    def check(row: Instance, tasks: tuple[OpenTask, ...]) -> None:
        check_work(who, work_from(row, tasks), task_id=task_id, doing=doing)

    return check


def work_from(row: Instance, tasks: tuple[OpenTask, ...]) -> Work:
    """The facts the rules need, from an instance row and its open tasks as writes.load_instance_open reads them."""
    return Work(row.id or 0, row.workflow, row.assignee, row.created_by, tasks)


def work_of(engine: Engine, instance_id: int) -> Work:
    """Load the facts the rules need about an instance; NotFound for an unknown id."""
    if isinstance(instance_id, bool) or not isinstance(instance_id, int):
        raise InvalidInput("instance id must be a whole number", "instance_id")
    with read_session(engine) as session:
        row, tasks = load_instance_open(session, instance_id)  # the same read a change's guard gets
    if row is None:
        raise NotFound(f"instance {instance_id} does not exist")
    return work_from(row, tasks)


# ---------------------------------------------------------------- rules


def require(who: Principal, *roles: str, doing: str) -> None:
    """Refuse unless `who` holds one of `roles` (admins always pass)."""
    if not who.has(*roles):
        held = ", ".join(sorted(who.roles)) or "no role"
        raise Forbidden(f"{doing} needs the role {' or '.join(roles)} (or admin); {who.login} has {held}")


def check_publish(who: Principal) -> None:
    require(who, PROCESS_OWNER, doing="publishing a workflow definition")


def check_start(who: Principal, workflow: str) -> None:
    """Tickets are started by the service desk; other work by reps; managers start both."""
    roles = (SERVICE_DESK, MANAGER) if workflow in TICKET_WORKFLOWS else (REP, MANAGER)
    require(who, *roles, doing=f"starting a {workflow}")


def check_customer_write(who: Principal, *, tier_change: bool = False) -> None:
    """Staff keep customer records; a tier re-derives SLA deadlines, so only managers change it."""
    if tier_change:
        require(who, MANAGER, doing="changing a customer's tier")
    else:
        require(who, REP, MANAGER, SERVICE_DESK, doing="creating or changing a customer")


def check_work(who: Principal, work: Work, *, task_id: str | None = None, doing: str = "working on") -> None:
    """Act on an instance (advance, move, wait, close, complete a task): only on work that is yours to do."""
    if _may_work(who, work, task_id):
        return
    owners = sorted({a for _, a, _ in _tasks(work, task_id) if a} | ({work.assignee} if work.assignee else set()))
    extra = ", the service desk" if work.workflow in TICKET_WORKFLOWS else ""
    raise Forbidden(f"{who.login} may not be {doing} instance {work.instance_id}: it is assigned to "
                    f"{', '.join(owners) or 'nobody'}; only its assignee, a member of the team it is queued to, "
                    f"the manager of that team{extra} or an admin may")


def check_view(who: Principal, work: Work) -> None:
    """See an instance: whoever may work on it, its creator, process owners."""
    if who.has(PROCESS_OWNER) or work.created_by == who.login or _may_work(who, work, None):
        return
    raise Forbidden(f"{who.login} may not see instance {work.instance_id}: it is neither theirs nor their "
                    "teams' work (process owners, managers of its team and admins may see it)")


def check_assign(who: Principal, work: Work) -> None:
    """Reassign: an admin, or the manager of the team the work belongs to."""
    require(who, MANAGER, doing="reassigning work")
    if who.is_admin or _managed(who, work, None):
        return
    raise Forbidden(f"{who.login} does not manage the team that instance {work.instance_id} belongs to "
                    f"(assigned to {work.assignee or 'nobody'}): ask that team's manager or an admin")


def check_queue(who: Principal, queue: str) -> None:
    """Everyone has their own queue and their teams' unassigned queue; the whole team's work is for managers."""
    if queue not in QUEUES:
        raise InvalidInput(f"queue must be one of {', '.join(QUEUES)}, not {queue!r}", "queue")
    if queue == "team":
        require(who, MANAGER, doing="reading a team's whole queue")


def report_teams(who: Principal, team: str | None) -> frozenset[str] | None:
    """The teams a report may cover: None = all (process owners, admins); a manager's own teams otherwise."""
    require(who, MANAGER, PROCESS_OWNER, doing="reading reports")
    if who.has(PROCESS_OWNER):
        return None if team is None else frozenset({team})
    if team is None:
        return who.managed_teams
    if team not in who.managed_teams:
        raise Forbidden(f"{who.login} does not manage team {team!r}; their teams: "
                        f"{', '.join(sorted(who.managed_teams)) or 'none'}")
    return frozenset({team})


def sla_assignee(who: Principal, assignee: str | None) -> str | None:
    """Reps see the SLA state of their own work only; everyone else may look at anyone's."""
    if who.has(MANAGER, SERVICE_DESK, PROCESS_OWNER):
        return assignee
    if assignee not in (None, who.login):
        raise Forbidden(f"{who.login} may only see the SLA state of their own work")
    return who.login


def scope(who: Principal) -> Scope:
    """What lists of instances may show `who`: the same relations as `check_view`."""
    if who.has(PROCESS_OWNER):
        return Scope(everything=True, login=who.login)
    manager = MANAGER in who.roles
    return Scope(everything=False, login=who.login,
                 logins=frozenset({who.login}) | (who.managed_members if manager else frozenset()),
                 queue_teams=who.teams, teams=who.managed_teams if manager else frozenset(),
                 workflows=TICKET_WORKFLOWS if SERVICE_DESK in who.roles else frozenset())


# ---------------------------------------------------------------- internals


def _tasks(work: Work, task_id: str | None) -> Iterable[tuple[str, str | None, str | None]]:
    return [t for t in work.tasks if t[0] == task_id] if task_id is not None else work.tasks


def _may_work(who: Principal, work: Work, task_id: str | None) -> bool:
    if who.is_admin:
        return True
    if SERVICE_DESK in who.roles and work.workflow in TICKET_WORKFLOWS:
        return True
    if task_id is not None and not any(t[0] == task_id for t in work.tasks):
        task_id = None  # not an open task: whoever may work on the instance is told so by the engine (404)
    tasks = list(_tasks(work, task_id))
    if work.assignee == who.login and (task_id is None or any(a in (None, who.login) for _, a, _ in tasks)):
        return True
    if any(a == who.login or (a is None and team in who.teams) for _, a, team in tasks):
        return True
    return MANAGER in who.roles and _managed(who, work, task_id)


def _managed(who: Principal, work: Work, task_id: str | None) -> bool:
    if work.assignee is not None and work.assignee in who.managed_members:
        return True
    return any(team in who.managed_teams or (a is not None and a in who.managed_members)
               for _, a, team in _tasks(work, task_id))

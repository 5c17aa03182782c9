"""Who is who, as escalations read it: the people tables kept in memory per process, checked before each use.

Every escalation tick resolves the people its levels notify (the holder, a team's manager, everyone with a
role). Reading the people tables for that cost four or five queries per firing transaction: 1.8 ms of a
9.8 ms tick of 20 levels on SQLite, 4 of 17.5 ms on PostgreSQL (bench scratch timing, 2,000 instances).
Those tables change a few times a day, so a process keeps one copy of them (`People`) and, before each
use, reads `people_stamp` (one indexed row), which database triggers re-stamp on every write to app_user,
team and team_member (migration 0022). A different stamp means the copy is reloaded, whole.

Order matters on PostgreSQL, where each statement sees its own snapshot: the stamp is read first, then the
tables. A write landing in between makes the copy newer than its stamp says, and the next use reloads it;
the reverse order could label an older copy with a newer stamp and keep it. A stamp is never reused (see
0022), so a copy taken inside a transaction that rolled back is never taken for a committed state.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.pool import Pool
from sqlmodel import Session

from engine.models.people import PeopleStamp, Team, TeamMember, User
from notifications.render import Recipient

ASSIGNEE, MANAGER = "assignee", "manager"

_STAMP = sa.select(PeopleStamp.__table__.c.stamp).where(PeopleStamp.__table__.c.id == 1)  # type: ignore[attr-defined]
STAMP = _STAMP.scalar_subquery()  # the stamp as a column of another statement (see people_as_of)
_USER = User.__table__  # type: ignore[attr-defined]
_TEAM = Team.__table__  # type: ignore[attr-defined]
_MEMBER = TeamMember.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Person:
    """A user as the directory holds them (what resolving recipients needs)."""

    id: int
    login: str
    display_name: str
    email: str
    time_zone: str
    active: bool
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class TeamEntry:
    name: str
    manager_id: int | None


@dataclass(frozen=True)
class People:
    """One consistent copy of the people tables, as of `stamp` (None: the stamp row is missing, never kept)."""

    stamp: int | None
    by_login: dict[str, Person]
    by_id: dict[int, Person]
    teams: dict[str, TeamEntry]  # by name (names are unique)
    teams_of: dict[int, tuple[TeamEntry, ...]]  # user id -> their teams, by name
    active: tuple[Person, ...]  # active users, by login


_copies: weakref.WeakKeyDictionary[Pool, People] = weakref.WeakKeyDictionary()  # one per database (pool)


def people(session: Session) -> People:
    """The people tables as of now: this process's copy when its stamp is current, else a fresh one."""
    return people_as_of(session, session.connection().execute(_STAMP).scalar())


def people_as_of(session: Session, stamp: int | None) -> People:
    """`people` with the stamp already read by the caller, earlier in this transaction (e.g. as a column of a
    statement it needed anyway, `STAMP` below: one round trip less)."""
    conn = session.connection()
    pool = conn.engine.pool
    kept = _copies.get(pool)
    if kept is not None and stamp is not None and kept.stamp == stamp:
        return kept
    fresh = _load(conn, stamp)
    if stamp is not None:
        _copies[pool] = fresh
    return fresh


def _load(conn: sa.Connection, stamp: int | None) -> People:
    u = _USER.c
    persons = [Person(row.id, row.login, row.display_name, row.email, row.time_zone, bool(row.active),
                      frozenset(row.roles or ()))
               for row in conn.execute(sa.select(u.id, u.login, u.display_name, u.email, u.time_zone, u.active,
                                                 u.roles))]
    by_team_id = {row.id: TeamEntry(row.name, row.manager_id)
                  for row in conn.execute(sa.select(_TEAM.c.id, _TEAM.c.name, _TEAM.c.manager_id))}
    member_of: dict[int, list[TeamEntry]] = {}
    for row in conn.execute(sa.select(_MEMBER.c.user_id, _MEMBER.c.team_id)):
        member_of.setdefault(row.user_id, []).append(by_team_id[row.team_id])
    return People(
        stamp=stamp,
        by_login={p.login: p for p in persons},
        by_id={p.id: p for p in persons},
        teams={t.name: t for t in by_team_id.values()},
        teams_of={user_id: tuple(sorted(found, key=lambda t: t.name)) for user_id, found in member_of.items()},
        active=tuple(sorted((p for p in persons if p.active), key=lambda p: p.login)),
    )


class Directory:
    """Resolve who a level's `notify` names, over the current copy of the people tables (one stamp read).

    `assignee` is whoever holds the clock's task (a per-task clock) or the instance; `manager` the manager of
    that task's team, else of the teams the holder belongs to; `role:<role>` every active user with that role;
    `user:<login>` one person. A name that is not an active user with an e-mail address is unreachable.
    """

    def __init__(self, session: Session, copy: People | None = None) -> None:
        self.people = copy if copy is not None else people(session)

    def resolve(self, tokens: Sequence[str], *, holder: str | None,
                team: str | None) -> tuple[list[Recipient], list[str]]:
        """The people `tokens` name (in order, each once) and the names that reach nobody."""
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

    def user(self, login: str | None) -> Person | None:
        return self.people.by_login.get(login) if login else None

    def managers(self, team: str | None, holder: str | None) -> list[str]:
        """The manager of the task's team, else of each team the holder belongs to (never the holder)."""
        if team:
            named = self.people.teams.get(team)
            teams: Sequence[TeamEntry] = (named,) if named is not None else ()
        else:
            user = self.user(holder)
            teams = self.people.teams_of.get(user.id, ()) if user is not None else ()
        logins: list[str] = []
        for entry in teams:
            manager = self.people.by_id.get(entry.manager_id) if entry.manager_id else None
            if manager is not None and manager.login != holder and manager.login not in logins:
                logins.append(manager.login)
        return logins

    def with_role(self, role: str) -> list[str]:
        """The logins of every active user with `role`, by login."""
        return [p.login for p in self.people.active if role in p.roles]

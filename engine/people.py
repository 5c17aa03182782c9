"""The people service: users, teams with an explicit member order, absences; each change checked first.

Every function is one transaction and raises an engine.errors family whose message says what to fix.
Roster edits keep the rotation pointer meaningful (engine.rotation.keep_rotation), so a team's
round-robin continues after whoever got work last, whatever the edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine import people_checks as checks
from engine import rotation
from engine.clock import utcnow
from engine.db import read_session
from engine.errors import Conflict, InvalidInput, NotFound
from engine.models.people import Absence, Team, TeamMember, User


@dataclass(frozen=True)
class UserView:
    """A user as the API and reports show them."""

    login: str
    display_name: str
    email: str
    time_zone: str
    calendar: str
    region: str | None
    roles: tuple[str, ...]
    product_lines: tuple[str, ...]
    skills: tuple[str, ...]
    capacity: int | None
    active: bool

    @classmethod
    def of(cls, u: User) -> UserView:
        return cls(u.login, u.display_name, u.email, u.time_zone, u.calendar, u.region, tuple(u.roles),
                   tuple(u.product_lines), tuple(u.skills), u.capacity, u.active)


@dataclass(frozen=True)
class TeamView:
    """A team with its manager and members in rotation order."""

    name: str
    title: str
    manager: str | None
    region: str | None
    product_lines: tuple[str, ...]
    members: tuple[str, ...]


@dataclass(frozen=True)
class AbsenceView:
    """One absence period of a user."""

    id: int
    login: str
    starts_at: datetime
    ends_at: datetime
    reason: str | None


# ---------------------------------------------------------------- users


def create_user(engine: Engine, login: str, *, display_name: str, email: str, time_zone: str = "UTC",
                roles: Sequence[str] = ("rep",), calendar: str = "standard", region: str | None = None,
                product_lines: Sequence[str] = (), skills: Sequence[str] = (),
                capacity: int | None = None) -> UserView:
    """Register a person; the login is how tasks, audit entries and (later) API tokens name them."""
    fields = checks.clean_user(dict(display_name=display_name, email=email, time_zone=time_zone, roles=roles,
                                    calendar=calendar, region=region, product_lines=product_lines,
                                    skills=skills, capacity=capacity))
    login = checks.login(login)
    with Session(engine) as session:
        if _find_user(session, login) is not None:
            raise Conflict(f"a user with login '{login}' already exists: choose another login or update them")
        now = utcnow()
        user = User(login=login, created_at=now, updated_at=now, **fields)
        session.add(user)
        _commit(session, f"a user with login '{login}' already exists")
        return UserView.of(user)


def update_user(engine: Engine, login: str, **changes: Any) -> UserView:
    """Change some of a user's fields (display_name, email, time_zone, roles, skills, capacity, ...)."""
    fields = checks.clean_user(changes)
    with Session(engine) as session:
        user = _user(session, login)
        for key, value in fields.items():
            setattr(user, key, value)
        user.updated_at = utcnow()
        session.add(user)
        session.commit()
        return UserView.of(user)


def deactivate_user(engine: Engine, login: str) -> UserView:
    """Someone who left: they keep their history and memberships but get no new work."""
    return update_user(engine, login, active=False)


def get_user(engine: Engine, login: str) -> UserView:
    with read_session(engine) as session:
        return UserView.of(_user(session, login))


def list_users(engine: Engine, *, active_only: bool = False) -> list[UserView]:
    with read_session(engine) as session:
        stmt = select(User).order_by(col(User.login))
        if active_only:
            stmt = stmt.where(col(User.active).is_(True))
        return [UserView.of(u) for u in session.exec(stmt)]


# ---------------------------------------------------------------- teams


def create_team(engine: Engine, name: str, *, title: str, manager: str | None = None, region: str | None = None,
                product_lines: Sequence[str] = (), members: Sequence[str] = ()) -> TeamView:
    """Create a team that rules can route to; `members` in rotation order."""
    if not isinstance(name, str) or not checks.NAME.fullmatch(name):
        raise InvalidInput(f"team name {name!r} must be lower-case letters, digits and '_' (as rules name it, "
                           "e.g. sales_north)", "name")
    clean_title = checks.text(title, "title")
    clean_region = checks.text(region, "region", limit=100, optional=True)
    lines = checks.words(product_lines, "product_lines")
    with Session(engine) as session:
        if _find_team(session, name) is not None:
            raise Conflict(f"a team named '{name}' already exists")
        manager_id = _manager_id(session, manager)
        team = Team(name=name, title=clean_title or name, manager_id=manager_id, region=clean_region,
                    product_lines=lines, created_at=utcnow())
        session.add(team)
        _commit(session, f"a team named '{name}' already exists")
        assert team.id is not None
        _place(session, team.id, _member_ids(session, members))
        session.commit()
        return _team_view(session, team)


def update_team(engine: Engine, name: str, *, title: str | None = None, manager: str | None = None,
                clear_manager: bool = False, region: str | None = None) -> TeamView:
    """Rename (title), change the manager (who gets the alerts) or the region of a team."""
    with Session(engine) as session:
        team = _team(session, name)
        if title is not None:
            team.title = checks.text(title, "title") or team.title
        if manager is not None or clear_manager:
            team.manager_id = None if clear_manager else _manager_id(session, manager)
        if region is not None:
            team.region = checks.text(region, "region", limit=100)
        session.add(team)
        session.commit()
        return _team_view(session, team)


def set_members(engine: Engine, team: str, logins: Sequence[str]) -> TeamView:
    """Replace a team's members with `logins`, in this rotation order (also how to reorder them)."""
    with Session(engine) as session:
        row = _team(session, team)
        assert row.id is not None
        _place(session, row.id, _member_ids(session, logins))
        session.commit()
        return _team_view(session, row)


def add_member(engine: Engine, team: str, login: str, *, position: int | None = None) -> TeamView:
    """Add someone at a 1-based position in the rotation (default: at the end)."""
    with Session(engine) as session:
        row = _team(session, team)
        assert row.id is not None
        order = [u.id for u, _ in rotation.members(session, row.id) if u.id is not None]
        user_id = _member_ids(session, [login])[0]
        if user_id in order:
            raise Conflict(f"{login} is already a member of team '{team}'")
        if position is not None and (isinstance(position, bool) or not isinstance(position, int)
                                     or not 1 <= position <= len(order) + 1):
            raise InvalidInput(f"position must be a whole number from 1 to {len(order) + 1}", "position")
        order.insert((position or len(order) + 1) - 1, user_id)
        _place(session, row.id, order)
        session.commit()
        return _team_view(session, row)


def remove_member(engine: Engine, team: str, login: str) -> TeamView:
    """Take someone out of a team; the rotation continues with whoever followed them."""
    with Session(engine) as session:
        row = _team(session, team)
        assert row.id is not None
        order = [u.id for u, _ in rotation.members(session, row.id) if u.id is not None]
        user = _user(session, login)
        if user.id not in order:
            raise NotFound(f"{login} is not a member of team '{team}'")
        _place(session, row.id, [uid for uid in order if uid != user.id])
        session.commit()
        return _team_view(session, row)


def get_team(engine: Engine, name: str) -> TeamView:
    with read_session(engine) as session:
        return _team_view(session, _team(session, name))


def list_teams(engine: Engine) -> list[TeamView]:
    with read_session(engine) as session:
        return [_team_view(session, t) for t in session.exec(select(Team).order_by(col(Team.name)))]


# ---------------------------------------------------------------- absences


def add_absence(engine: Engine, login: str, *, starts_at: datetime, ends_at: datetime,
                reason: str | None = None) -> AbsenceView:
    """Record a period (holiday, sick leave) in which the user gets no new work."""
    start, end = checks.aware(starts_at, "starts_at"), checks.aware(ends_at, "ends_at")
    if end <= start:
        raise InvalidInput("ends_at must be after starts_at", "ends_at")
    note = checks.text(reason, "reason", limit=300, optional=True)
    with Session(engine) as session:
        user = _user(session, login)
        assert user.id is not None
        absence = Absence(user_id=user.id, starts_at=start, ends_at=end, reason=note)
        session.add(absence)
        session.commit()
        assert absence.id is not None
        return AbsenceView(absence.id, login, start, end, note)


def remove_absence(engine: Engine, absence_id: int) -> None:
    """Cancel an absence (plans change)."""
    with Session(engine) as session:
        absence = session.get(Absence, absence_id) if isinstance(absence_id, int) else None
        if absence is None:
            raise NotFound(f"absence {absence_id} does not exist")
        session.delete(absence)
        session.commit()


def absences(engine: Engine, login: str) -> list[AbsenceView]:
    with read_session(engine) as session:
        user = _user(session, login)
        stmt = select(Absence).where(Absence.user_id == user.id).order_by(col(Absence.starts_at))
        return [AbsenceView(a.id or 0, login, rotation.utc(a.starts_at), rotation.utc(a.ends_at), a.reason)
                for a in session.exec(stmt)]


def seed_roster(engine: Engine, *, now: datetime | None = None) -> dict[str, int]:
    """The demo roster (see engine/roster.py); a no-op when any user exists."""
    from engine.roster import seed  # the roster builds on this module

    return seed(engine, now=now or utcnow())


# ---------------------------------------------------------------- internals


def _find_user(session: Session, login: str) -> User | None:
    return session.exec(select(User).where(User.login == login)).first()


def _user(session: Session, login: str) -> User:
    user = _find_user(session, login) if isinstance(login, str) else None
    if user is None:
        raise NotFound(f"no user with login {login!r}")
    return user


def _find_team(session: Session, name: str) -> Team | None:
    return session.exec(select(Team).where(Team.name == name)).first()


def _team(session: Session, name: str) -> Team:
    team = _find_team(session, name) if isinstance(name, str) else None
    if team is None:
        raise NotFound(f"no team named {name!r}")
    return team


def _manager_id(session: Session, login: str | None) -> int | None:
    if login is None:
        return None
    user = _user(session, login)
    if "manager" not in user.roles and "admin" not in user.roles:
        raise InvalidInput(f"{login} cannot manage a team: give them the 'manager' role first", "manager")
    return user.id


def _member_ids(session: Session, logins: Sequence[str]) -> list[int]:
    if isinstance(logins, str):
        raise InvalidInput("members must be a list of logins", "members")
    if len(set(logins)) != len(logins):
        raise InvalidInput("members lists someone twice: each person appears once in the rotation", "members")
    return [_user(session, login).id or 0 for login in logins]


def _place(session: Session, team_id: int, order: Sequence[int]) -> None:
    """Make the team's members exactly `order` (positions 1..n) and keep the rotation where it was."""
    before = [(u.id or 0, p) for u, p in rotation.members(session, team_id)]
    rotation.lock_pointer(session, team_id)
    session.execute(sa.delete(TeamMember).where(col(TeamMember.team_id) == team_id))
    session.add_all(TeamMember(team_id=team_id, user_id=uid, position=i) for i, uid in enumerate(order, 1))
    session.flush()
    rotation.keep_rotation(session, team_id, before)


def _team_view(session: Session, team: Team) -> TeamView:
    assert team.id is not None
    manager = session.get(User, team.manager_id) if team.manager_id else None
    logins = tuple(u.login for u, _ in rotation.members(session, team.id))
    return TeamView(team.name, team.title, manager.login if manager else None, team.region,
                    tuple(team.product_lines), logins)


def _commit(session: Session, duplicate: str) -> None:
    try:
        session.commit()
    except sa.exc.IntegrityError:
        session.rollback()
        raise Conflict(duplicate) from None

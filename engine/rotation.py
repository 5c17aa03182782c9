"""Choosing a person within a team: who is eligible, round-robin and least-loaded, each pass-over explained.

The rotation pointer names the last user who got work (never an index), so adding, removing or
reordering members never resets it; the pointer row is locked (SELECT ... FOR UPDATE on PostgreSQL;
SQLite serializes writers) inside the caller's transaction, so concurrent assignments queue on it
and no update is lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Session, col, func, select

from engine.models import HumanTask
from engine.models.people import Absence, RotationPointer, Team, TeamMember, User


@dataclass(frozen=True)
class Candidate:
    """One person considered: chosen or passed over, and why."""

    login: str
    outcome: str  # chosen | passed
    reason: str


@dataclass
class Pick:
    """The result of choosing within a team; `assignee` is None when nobody could take the task."""

    team: str
    strategy: str
    skill: str | None
    assignee: str | None = None
    candidates: list[Candidate] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def lock_pointer(session: Session, team_id: int) -> RotationPointer:
    """The team's pointer row, locked until the transaction ends (created on first use)."""
    stmt = (select(RotationPointer).where(RotationPointer.team_id == team_id).with_for_update()
            .execution_options(populate_existing=True))
    pointer = session.exec(stmt).first()
    if pointer is None:
        insert: Any = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
        session.execute(insert(RotationPointer).values(team_id=team_id, assignments=0)
                        .on_conflict_do_nothing(index_elements=["team_id"]))
        pointer = session.exec(stmt).one()
    return pointer


def members(session: Session, team_id: int) -> list[tuple[User, int]]:
    """The team's members with their positions, in rotation order."""
    stmt = (select(User, TeamMember.position).join(TeamMember, col(TeamMember.user_id) == col(User.id))
            .where(TeamMember.team_id == team_id).order_by(col(TeamMember.position), col(User.id)))
    return [(user, position) for user, position in session.exec(stmt)]


def open_counts(session: Session, logins: Iterable[str]) -> dict[str, int]:
    """Open human tasks per login (the load least-loaded and capacity caps look at)."""
    wanted = list(logins)
    if not wanted:
        return {}
    stmt: Any = (select(HumanTask.assignee, func.count()).where(HumanTask.status == "ready",
                                                                col(HumanTask.assignee).in_(wanted))
                 .group_by(HumanTask.assignee))
    found = {login: int(n) for login, n in session.exec(stmt)}
    return {login: found.get(login, 0) for login in wanted}


def utc(moment: datetime) -> datetime:
    """Times are stored in UTC; SQLite hands them back without an offset."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def absent_until(session: Session, user_ids: Iterable[int], now: datetime) -> dict[int, datetime]:
    """For each user absent at `now`, when the absence covering `now` ends."""
    ids = list(user_ids)
    if not ids:
        return {}
    at = utc(now)
    stmt = select(Absence).where(col(Absence.user_id).in_(ids), Absence.starts_at <= at, Absence.ends_at > at)
    out: dict[int, datetime] = {}
    for absence in session.exec(stmt):
        ends = utc(absence.ends_at)
        out[absence.user_id] = max(out.get(absence.user_id, ends), ends)
    return out


def local_time(moment: datetime, time_zone: str) -> str:
    """A moment as the person reads it: in their own time zone."""
    try:
        zone = ZoneInfo(time_zone)
    except (KeyError, ValueError):
        zone = ZoneInfo("UTC")
    return moment.astimezone(zone).strftime(f"%Y-%m-%d %H:%M ({zone.key})")


def unavailable(user: User, *, absent: datetime | None, skill: str | None, load: int | None = None) -> str | None:
    """Why a user cannot take new work now, or None; `load` (open tasks) is checked against capacity."""
    if not user.active:
        return "inactive"
    if absent is not None:
        return f"absent until {local_time(absent, user.time_zone)}"
    if skill and skill not in user.skills:
        return f"missing skill '{skill}'"
    if load is not None and user.capacity is not None and load >= user.capacity:
        return f"at capacity {load}/{user.capacity}"
    return None


def pick(session: Session, team: Team, *, now: datetime, strategy: str, skill: str | None = None) -> Pick:
    """Choose the member of `team` who gets the next task and move the team's pointer to them."""
    assert team.id is not None
    pointer = lock_pointer(session, team.id)
    roster = members(session, team.id)
    result = Pick(team=team.name, strategy=strategy, skill=skill)
    away = absent_until(session, [u.id for u, _ in roster if u.id is not None], now)
    load = open_counts(session, [u.login for u, _ in roster])
    order = _rotation(roster, pointer)
    blocked = {u.login: unavailable(u, absent=away.get(u.id or 0), skill=skill, load=load[u.login]) for u, _ in order}
    eligible = [(u, p) for u, p in order if blocked[u.login] is None]
    if not eligible:
        result.candidates = [Candidate(u.login, "passed", blocked[u.login] or "") for u, _ in order]
        return result
    if strategy == "least_loaded":
        fewest = min(load[u.login] for u, _ in eligible)
        chosen, position = next((u, p) for u, p in eligible if load[u.login] == fewest)
        reason = f"fewest open tasks ({fewest})"
    else:
        chosen, position = eligible[0]
        last = next((u for u, _ in roster if u.id == pointer.last_user_id), None)
        if last is None and pointer.last_user_id:
            last = session.get(User, pointer.last_user_id)
        reason = f"next in rotation after {last.login}" if last else "first in rotation"
    result.assignee = chosen.login
    result.candidates = [Candidate(chosen.login, "chosen", reason)] + [
        Candidate(u.login, "passed", blocked[u.login] or _passed(strategy, load[u.login], fewest=load[chosen.login]))
        for u, _ in order if u is not chosen]
    pointer.last_user_id, pointer.last_position = chosen.id, position
    pointer.assignments += 1
    pointer.updated_at = now
    session.add(pointer)
    session.flush()
    return result


def _passed(strategy: str, load: int, *, fewest: int) -> str:
    if strategy != "least_loaded":
        return "not next in rotation"
    return f"more open tasks ({load})" if load > fewest else f"as few open tasks ({load}), but later in rotation"


def _rotation(roster: list[tuple[User, int]], pointer: RotationPointer) -> list[tuple[User, int]]:
    """Members in the order the rotation visits them: after the last user (or where they stood), wrapping."""
    ids = [u.id for u, _ in roster]
    if pointer.last_user_id in ids:
        start = ids.index(pointer.last_user_id) + 1
    elif pointer.last_position is not None:
        start = next((i for i, (_, p) in enumerate(roster) if p > (pointer.last_position or 0)), 0)
    else:
        start = 0
    return roster[start:] + roster[:start]


def keep_rotation(session: Session, team_id: int, before: Sequence[tuple[int, int]]) -> None:
    """After a roster edit, re-anchor the pointer if its last user left, so the rotation continues after them.

    `before` is the (user_id, position) order before the edit; the rotation continues with the first
    member after the departed user (in that old order) who is still in the team.
    """
    pointer = lock_pointer(session, team_id)
    now_positions = {u.id: p for u, p in members(session, team_id)}
    if pointer.last_user_id is None or pointer.last_user_id in now_positions:
        return
    old_ids = [uid for uid, _ in before]
    if pointer.last_user_id in old_ids:
        index = old_ids.index(pointer.last_user_id)
        after = old_ids[index + 1:] + old_ids[:index]
    else:  # left earlier: continue from where they stood, in the old order
        after = [uid for uid, p in before if p > (pointer.last_position or 0)]
        after += [uid for uid, p in before if p <= (pointer.last_position or 0)]
    successor = next((uid for uid in after if uid in now_positions), None)
    pointer.last_position = now_positions[successor] - 1 if successor is not None else None
    session.add(pointer)
    session.flush()


"""Manual reassignment: a team's manager (or an admin) gives open work to someone else, with a reason.

It is a change of the instance like any other: guarded by the row version, audited (kind
"reassigned"), and it survives later rule evaluation while the chosen person still owns the instance
(see engine.assignment).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from engine.errors import Conflict, InvalidInput, NotFound, TransitionRefused
from engine.instances import Funnel
from engine.models import AuditEvent, HumanTask, Instance
from engine.models.people import Team, TeamMember, User
from engine.rotation import absent_until, local_time
from engine.views import InstanceView


def reassign(funnel: Funnel, instance_id: int, *, to: str, actor: str, reason: str, task_id: str | None = None,
             expected_version: int | None = None) -> InstanceView:
    """Give an instance's open task(s) to `to`; only the manager of the task's team or an admin may."""
    why = reason.strip() if isinstance(reason, str) else ""
    if not why:
        raise InvalidInput("reassigning needs a reason (it is kept in the history)", "reason")
    now = funnel.clock()
    with Session(funnel.engine) as session:
        row = _instance(session, instance_id, expected_version)
        tasks = _open_tasks(session, instance_id, task_id)
        target = _active_user(session, to, "to")
        _authorize(session, actor, tasks, row.assignee, target)
        if all(t.assignee == target.login for t in tasks):
            raise InvalidInput(f"{target.login} already has this work", "to")
        version, before, stage = row.row_version + 1, row.assignee, row.stage
        result = session.execute(
            sa.update(Instance).where(col(Instance.id) == instance_id, col(Instance.row_version) == row.row_version)
            .values(assignee=target.login, row_version=version, updated_at=now))
        if result.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"instance {instance_id} was changed by someone else; reload it and retry")
        for task in tasks:
            task.assignee = target.login
            session.add(task)
        session.add(AuditEvent(
            instance_id=instance_id, at=now, actor=actor, kind="reassigned", from_stage=stage,
            to_stage=stage, reason=why, row_version=version,
            changes={"assignee": {"from": before, "to": target.login},
                     "tasks": [t.task_uuid for t in tasks], "note": _note(session, target, now)},
        ))
        session.commit()
    return funnel.get(instance_id)


def _instance(session: Session, instance_id: int, expected: int | None) -> Instance:
    if not isinstance(instance_id, int) or isinstance(instance_id, bool):
        raise InvalidInput("instance id must be a whole number", "instance_id")
    row = session.get(Instance, instance_id)
    if row is None:
        raise NotFound(f"instance {instance_id} does not exist")
    if expected is not None and expected != row.row_version:
        raise Conflict(f"instance {instance_id} is at version {row.row_version}, not {expected}: reload it and "
                       "retry", current_version=row.row_version)
    if row.status != "running":
        raise Conflict(f"instance {instance_id} is {row.status}; it has no open work to reassign",
                       current_version=row.row_version)
    return row


def _open_tasks(session: Session, instance_id: int, task_id: str | None) -> list[HumanTask]:
    stmt = select(HumanTask).where(HumanTask.instance_id == instance_id, HumanTask.status == "ready")
    tasks = list(session.exec(stmt.order_by(col(HumanTask.id))))
    if task_id is not None:
        tasks = [t for t in tasks if t.task_uuid == str(task_id)]
        if not tasks:
            raise NotFound(f"task {task_id} is not open on instance {instance_id}")
    if not tasks:
        raise Conflict(f"instance {instance_id} has no open task to reassign")
    return tasks


def _active_user(session: Session, login: str, field: str) -> User:
    user = session.exec(select(User).where(User.login == login)).first() if isinstance(login, str) else None
    if user is None:
        raise NotFound(f"no user with login {login!r}")
    if not user.active:
        raise InvalidInput(f"{login} is inactive and cannot be given work; choose an active colleague", field)
    return user


def _authorize(session: Session, actor: str, tasks: list[HumanTask], owner: str | None, target: User) -> None:
    """Admins may always; a manager may for the teams they manage (the tasks' teams, else the people's)."""
    user = session.exec(select(User).where(User.login == actor)).first() if isinstance(actor, str) else None
    if user is None or not user.active:
        raise TransitionRefused(f"{actor!r} is not an active user: only a team's manager or an admin may reassign")
    if "admin" in user.roles:
        return
    if "manager" not in user.roles:
        raise TransitionRefused(f"{actor} is not a manager: only the manager of the task's team or an admin may "
                                "reassign it")
    teams = {t.team for t in tasks if t.team} or _teams_of(session, [owner, target.login])
    managed = set(session.exec(select(Team.name).where(Team.manager_id == user.id)))
    if not teams or not teams <= managed:
        needed = ", ".join(sorted(teams - managed)) or "a team of the people involved"
        raise TransitionRefused(f"{actor} does not manage {needed}: ask that team's manager or an admin")


def _teams_of(session: Session, logins: list[str | None]) -> set[str]:
    stmt = (select(Team.name).join(TeamMember, col(TeamMember.team_id) == col(Team.id))
            .join(User, col(User.id) == col(TeamMember.user_id)).where(col(User.login).in_([x for x in logins if x])))
    return set(session.exec(stmt))


def _note(session: Session, target: User, now: datetime) -> str | None:
    """Tell the history if the chosen person is away (a manager may still choose them)."""
    assert target.id is not None
    away = absent_until(session, [target.id], now).get(target.id)
    return f"{target.login} is absent until {local_time(away, target.time_zone)}" if away else None

"""Work queues: my open tasks, and my teams' unassigned tasks; filterable, oldest first, paginated."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from engine.db import read_session
from engine.errors import InvalidInput, NotFound
from engine.models import HumanTask, Instance
from engine.models.people import Team, TeamMember, User

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


@dataclass(frozen=True)
class QueueItem:
    """An open task as a queue shows it, with what a person needs to pick the right one."""

    instance_id: int
    task_id: str
    name: str
    stage: str | None
    workflow: str
    team: str | None
    assignee: str | None
    customer_tier: str | None
    amount: float | None
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Page:
    """One page of a queue and how many items the whole queue holds."""

    items: list[QueueItem]
    total: int
    limit: int
    offset: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.items) < self.total


def my_tasks(engine: Engine, login: str, *, workflow: str | None = None, stage: str | None = None,
             limit: int = DEFAULT_LIMIT, offset: int = 0) -> Page:
    """The open tasks assigned to `login`, oldest first."""
    if not isinstance(login, str) or not login:
        raise InvalidInput("login must be a non-empty text", "login")
    return page_of(engine, col(HumanTask.assignee) == login, workflow=workflow, stage=stage, limit=limit,
                 offset=offset)


def team_queue(engine: Engine, login: str, *, team: str | None = None, workflow: str | None = None,
               stage: str | None = None, limit: int = DEFAULT_LIMIT, offset: int = 0) -> Page:
    """The unassigned tasks waiting for the teams `login` belongs to or manages (or just `team`), oldest first."""
    with read_session(engine) as session:
        user = session.exec(select(User).where(User.login == login)).first() if isinstance(login, str) else None
        if user is None:
            raise NotFound(f"no user with login {login!r}")
        mine = _teams_of(session, user)
    if team is not None:
        if team not in mine:
            known = ", ".join(sorted(mine)) or "none"
            raise InvalidInput(f"{login} is not in team {team!r}; their teams: {known}", "team")
        mine = [team]
    where = sa.and_(col(HumanTask.assignee).is_(None), col(HumanTask.team).in_(mine or [""]))
    return page_of(engine, where, workflow=workflow, stage=stage, limit=limit, offset=offset)


def _teams_of(session: Session, user: User) -> list[str]:
    member = select(Team.name).join(TeamMember, col(TeamMember.team_id) == col(Team.id)).where(
        TeamMember.user_id == user.id)
    managed = select(Team.name).where(Team.manager_id == user.id)
    return sorted(set(session.exec(member)) | set(session.exec(managed)))


def check_page(limit: Any, offset: Any) -> None:
    """Page bounds every list shares (offset capped so PostgreSQL's integer never overflows)."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be a whole number from 1 to {MAX_LIMIT}, not {limit!r}", "limit")
    if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset <= 2**31:
        raise InvalidInput(f"offset must be a whole number from 0 to {2**31}, not {offset!r}", "offset")


def filter_text(value: Any, name: str) -> str:
    """A text filter value: non-empty, no NUL (PostgreSQL refuses it), at most 200 characters."""
    if not isinstance(value, str) or not value.strip() or "\x00" in value or len(value) > 200:
        raise InvalidInput(f"{name} must be a non-empty text of at most 200 characters", name)
    return value


def page_of(engine: Engine, where: Any, *, workflow: str | None, stage: str | None, limit: int,
            offset: int) -> Page:
    """Open tasks matching `where` (plus workflow/stage filters), oldest first, one page."""
    check_page(limit, offset)
    conditions = [where, col(HumanTask.status) == "ready"]
    if workflow is not None:
        conditions.append(col(Instance.workflow) == filter_text(workflow, "workflow"))
    if stage is not None:
        conditions.append(col(HumanTask.stage) == filter_text(stage, "stage"))
    base: Any = select(HumanTask, Instance).join(Instance, col(Instance.id) == col(HumanTask.instance_id))
    base = base.where(*conditions)
    with read_session(engine) as session:
        total = session.exec(select(func.count()).select_from(base.subquery())).one()
        rows = session.exec(base.order_by(col(HumanTask.created_at), col(HumanTask.id)).limit(limit)
                            .offset(offset)).all()
        items = [QueueItem(instance_id=task.instance_id, task_id=task.task_uuid, name=task.name, stage=task.stage,
                           workflow=inst.workflow, team=task.team, assignee=task.assignee,
                           customer_tier=inst.customer_tier, amount=inst.amount, created_at=task.created_at)
                 for task, inst in rows]
    return Page(items=items, total=int(total), limit=limit, offset=offset)

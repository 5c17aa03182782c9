"""Lists for the API: instances by filter within what the caller may see, a task by id, a team's whole queue.

Filters and pages are checked here (InvalidInput names the parameter), so every caller gets the
same bounds; rows come back as the read models of engine.views and engine.queues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import col, func, select

from engine.db import read_session
from engine.errors import Conflict, InvalidInput, NotFound
from engine.models import HumanTask, Instance
from engine.models.customers import TIERS
from engine.permissions import Scope
from engine.queues import Page, check_page, filter_text, page_of
from engine.views import InstanceView, instance_view


@dataclass(frozen=True)
class InstancePage:
    """One page of instances and how many match in all."""

    items: list[InstanceView]
    total: int
    limit: int
    offset: int


@dataclass(frozen=True)
class TaskRef:
    """Where a task lives and whether it is still open."""

    task_id: str
    instance_id: int
    status: str
    name: str


def find_instances(engine: Engine, *, scope: Scope, workflow: str | None = None, stage: str | None = None,
                   status: str | None = None, assignee: str | None = None, customer_id: int | None = None,
                   tier: str | None = None, limit: int = 50, offset: int = 0) -> InstancePage:
    """Instances matching every given filter that `scope` lets the caller see, newest first."""
    check_page(limit, offset)
    if tier is not None and tier not in TIERS:
        raise InvalidInput(f"tier must be one of {', '.join(TIERS)}, not {tier!r}", "tier")
    conditions: list[Any] = [] if scope.everything else [_visible(scope)]
    for value, column, name in ((workflow, Instance.workflow, "workflow"), (stage, Instance.stage, "stage"),
                                (status, Instance.status, "status"), (assignee, Instance.assignee, "assignee"),
                                (tier, Instance.customer_tier, "tier")):
        if value is not None:
            conditions.append(col(column) == filter_text(value, name))
    if customer_id is not None:
        conditions.append(col(Instance.customer_id) == customer_id)
    with read_session(engine) as session:
        total = session.exec(select(func.count()).select_from(Instance).where(*conditions)).one()
        rows = list(session.exec(select(Instance).where(*conditions).order_by(col(Instance.id).desc())
                                 .limit(limit).offset(offset)))
        tasks: dict[int, list[HumanTask]] = {}
        if rows:
            stmt = select(HumanTask).where(col(HumanTask.instance_id).in_([r.id for r in rows]),
                                           HumanTask.status == "ready").order_by(col(HumanTask.id))
            for task in session.exec(stmt):
                tasks.setdefault(task.instance_id, []).append(task)
        items = [instance_view(r, tasks.get(r.id or 0, [])) for r in rows]
    return InstancePage(items=items, total=int(total), limit=limit, offset=offset)


def open_task(engine: Engine, task_id: str) -> TaskRef:
    """The instance an open task belongs to; NotFound for an unknown id, Conflict for a task no longer open."""
    with read_session(engine) as session:
        row = session.exec(select(HumanTask).where(HumanTask.task_uuid == filter_text(task_id, "task_id"))
                           .order_by(col(HumanTask.id).desc())).first()
        if row is None:
            raise NotFound(f"no task with id {task_id!r}")
        if row.status != "ready":
            instance = session.get(Instance, row.instance_id)
            raise Conflict(f"task {task_id} ({row.name}) is {row.status}: there is nothing left to complete; "
                           "reload the instance to see its open tasks",
                           current_version=instance.row_version if instance else None)
        return TaskRef(row.task_uuid, row.instance_id, row.status, row.name)


def team_tasks(engine: Engine, *, teams: frozenset[str] | None, members: frozenset[str] = frozenset(),
               workflow: str | None = None, stage: str | None = None, limit: int = 50, offset: int = 0) -> Page:
    """Every open task queued to `teams` or assigned to `members` (None: all teams), oldest first."""
    where: Any = sa.true()
    if teams is not None:
        where = sa.or_(col(HumanTask.team).in_(teams or [""]), col(HumanTask.assignee).in_(members or [""]))
    return page_of(engine, where, workflow=workflow, stage=stage, limit=limit, offset=offset)


def _visible(scope: Scope) -> Any:
    """The SQL form of permissions.check_view for lists."""
    task = sa.or_(
        col(HumanTask.assignee).in_(scope.logins or [""]),
        sa.and_(col(HumanTask.assignee).is_(None), col(HumanTask.team).in_(scope.queue_teams or [""])),
        col(HumanTask.team).in_(scope.teams or [""]),
    )
    open_task = (select(HumanTask.id).where(col(HumanTask.instance_id) == col(Instance.id),
                                            col(HumanTask.status) == "ready", task).exists())
    return sa.or_(col(Instance.assignee).in_(scope.logins or [""]), col(Instance.created_by) == scope.login,
                  col(Instance.workflow).in_(scope.workflows or [""]), open_task)

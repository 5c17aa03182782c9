"""Work queues and completing a task (an advance of the task's instance, naming the task)."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Response

from api.auth import FunnelDep, UserDep
from api.errors import responses
from api.routes.common import Filter, Limit, Offset, TaskIdPath, instance_response
from api.schemas import CompleteIn, InstanceOut, QueueItemOut, TaskList
from engine import permissions, queues, search

router = APIRouter(prefix="/api/tasks", tags=["tasks"])


@router.get("", responses=responses(403, 404, 422))
def tasks(f: FunnelDep, user: UserDep, queue: Literal["mine", "team", "unassigned"] = "mine",
          workflow: Filter = None, stage: Filter = None, limit: Limit = 50, offset: Offset = 0) -> TaskList:
    """Open tasks, oldest first. mine: assigned to you; unassigned: waiting in your teams' queues;
    team: everything of the teams you manage (managers; admins see every team)."""
    permissions.check_queue(user, queue)
    if queue == "mine":
        page = queues.my_tasks(f.engine, user.login, workflow=workflow, stage=stage, limit=limit, offset=offset)
    elif queue == "unassigned":
        page = queues.team_queue(f.engine, user.login, workflow=workflow, stage=stage, limit=limit, offset=offset)
    else:
        page = search.team_tasks(f.engine, teams=None if user.is_admin else user.managed_teams,
                                 members=user.managed_members, workflow=workflow, stage=stage, limit=limit,
                                 offset=offset)
    return TaskList(queue=queue, items=[QueueItemOut.model_validate(i.to_dict()) for i in page.items],
                    total=page.total, limit=page.limit, offset=page.offset)


@router.post("/{task_id}/complete", responses=responses(403, 404, 409, 422), response_model=InstanceOut)
def complete(task_id: TaskIdPath, body: CompleteIn, f: FunnelDep, user: UserDep) -> Response:
    """Complete an open task with this data: its stage's exit criteria apply (422 lists every unmet one)."""
    ref = search.open_task(f.engine, task_id)
    return instance_response(f, f.advance(ref.instance_id, body.data, actor=user.login,
                                          expected_version=body.expected_version, task_id=task_id,
                                          guard=permissions.guard(user, task_id=task_id, doing="completing a task of")))

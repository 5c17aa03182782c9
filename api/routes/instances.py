"""Instances: start, list, read, advance, move, wait, close early, reassign. Every call is checked by
engine.permissions first, then carried out by the engine; refusals are problem documents (api.errors)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.auth import FunnelDep, UserDep
from api.errors import responses
from api.routes.common import Filter, InstanceId, Limit, Offset, instance_out, instance_response
from api.schemas import (
    MAX_ID,
    AdvanceIn,
    AssignIn,
    ClockOut,
    CloseIn,
    EventOut,
    InstanceDetail,
    InstanceList,
    InstanceOut,
    LinkOut,
    MoveIn,
    StartIn,
    Tier,
    WaitingIn,
)
from engine import overrides, permissions, search, sla_queries
from engine.links import links_of

router = APIRouter(prefix="/api/instances", tags=["instances"])
CHANGES = responses(403, 404, 409, 422)


@router.post("", status_code=201, responses=responses(403, 404, 422), response_model=InstanceOut)
def start(body: StartIn, f: FunnelDep, user: UserDep) -> Response:
    """Start an instance of the newest version of a workflow (reps: sales work; service desk: tickets)."""
    permissions.check_start(user, body.workflow)
    view = f.start(body.workflow, body.data, actor=user.login, customer_id=body.customer_id,
                   customer_tier=body.customer_tier, waiting=body.waiting, waiting_reason=body.waiting_reason)
    return instance_response(f, view, status_code=201)


@router.get("", responses=responses(422))
def list_instances(
    f: FunnelDep, user: UserDep, workflow: Filter = None, stage: Filter = None, status: Filter = None,
    assignee: Filter = None, customer_id: Annotated[int | None, Query(ge=1, le=MAX_ID)] = None,
    tier: Tier | None = None, limit: Limit = 50, offset: Offset = 0,
) -> InstanceList:
    """Instances you may see (yours, your teams', tickets for the service desk; all for process owners), newest
    first, filtered by every given parameter; `total` counts all matches."""
    page = search.find_instances(f.engine, scope=permissions.scope(user), workflow=workflow, stage=stage,
                                 status=status, assignee=assignee, customer_id=customer_id, tier=tier,
                                 limit=limit, offset=offset)
    return InstanceList(items=[instance_out(f, v) for v in page.items], total=page.total, limit=page.limit,
                        offset=page.offset)


@router.get("/{instance_id}", responses=responses(403, 404, 422))
def detail(instance_id: InstanceId, f: FunnelDep, user: UserDep) -> InstanceDetail:
    """An instance's data, stage, status, open tasks, SLA clocks, linked instances and history."""
    permissions.check_view(user, permissions.work_of(f.engine, instance_id))
    out = instance_out(f, f.get(instance_id))
    return InstanceDetail(
        **out.model_dump(),
        links=[LinkOut.model_validate(link.to_dict()) for link in links_of(f, instance_id)],
        history=[EventOut.model_validate(e.model_dump()) for e in f.history(instance_id)],
        sla=[ClockOut.model_validate(c.to_dict()) for c in sla_queries.clocks_of(f.engine, instance_id, f.clock())],
    )


@router.get("/{instance_id}/history", responses=responses(403, 404, 422))
def history(instance_id: InstanceId, f: FunnelDep, user: UserDep) -> list[EventOut]:
    """Who moved what, when, with which data and why (oldest first)."""
    permissions.check_view(user, permissions.work_of(f.engine, instance_id))
    return [EventOut.model_validate(e.model_dump()) for e in f.history(instance_id)]


@router.post("/{instance_id}/advance", responses=CHANGES, response_model=InstanceOut)
def advance(instance_id: InstanceId, body: AdvanceIn, f: FunnelDep, user: UserDep) -> Response:
    """Complete the current stage (or `task_id`): 422 lists every unmet criterion; 409 names the current version."""
    return instance_response(f, f.advance(instance_id, body.data, actor=user.login,
                                          expected_version=body.expected_version, task_id=body.task_id,
                                          guard=permissions.guard(user, task_id=body.task_id, doing="advancing")))


@router.post("/{instance_id}/move", responses=CHANGES, response_model=InstanceOut)
def move(instance_id: InstanceId, body: MoveIn, f: FunnelDep, user: UserDep) -> Response:
    """Go back to an earlier stage or skip ahead, as the workflow's policy allows, with an audited reason."""
    return instance_response(f, f.move(instance_id, body.to_stage, actor=user.login, reason=body.reason, data=body.data,
                                       expected_version=body.expected_version,
                                       guard=permissions.guard(user, doing="moving")))


@router.post("/{instance_id}/waiting", responses=CHANGES, response_model=InstanceOut)
def waiting(instance_id: InstanceId, body: WaitingIn, f: FunnelDep, user: UserDep) -> Response:
    """Start (`waiting: true`, with a reason) or end waiting on the customer; SLA clocks pause meanwhile."""
    return instance_response(f, f.set_waiting(instance_id, waiting=body.waiting, actor=user.login, reason=body.reason,
                                              expected_version=body.expected_version,
                                              guard=permissions.guard(user, doing="setting waiting on")))


@router.post("/{instance_id}/close", responses=CHANGES, response_model=InstanceOut)
def close(instance_id: InstanceId, body: CloseIn, f: FunnelDep, user: UserDep) -> Response:
    """Close early where the workflow allows it; open tasks are cancelled and listed as unanswered."""
    return instance_response(f, f.close_early(instance_id, actor=user.login, reason=body.reason,
                                              expected_version=body.expected_version,
                                              guard=permissions.guard(user, doing="closing")))


@router.post("/{instance_id}/assign", responses=CHANGES, response_model=InstanceOut)
def assign(instance_id: InstanceId, body: AssignIn, f: FunnelDep, user: UserDep) -> Response:
    """Give the open work to someone else, with an audited reason (the team's manager or an admin)."""
    permissions.check_assign(user, permissions.work_of(f.engine, instance_id))
    view = overrides.reassign(f, instance_id, to=body.assignee, actor=user.login, reason=body.reason,
                              task_id=body.task_id, expected_version=body.expected_version)
    return instance_response(f, view)

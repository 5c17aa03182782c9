"""Linked instances: an outcome that declares `funnel:starts` (a won deal) starts its follow-up (the project).

The start happens inside the transaction that reached the outcome, so the win and its project are
committed together or not at all; the row-version guard lets only one writer reach the outcome, and
the unique (from_instance_id, kind) constraint on instance_link is the database's backstop.
"""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import col, or_, select

from engine.db import read_session
from engine.errors import Conflict, FunnelError, InvalidInput, NotFound, WorkflowFailed
from engine.instances import RUNNING, ChangeEvent, Funnel
from engine.models import Instance
from engine.models.customers import InstanceLink
from engine.spiff import Workflow
from engine.stages import Outcome, Starts

MAX_DEPTH = 8  # workflows whose outcomes start each other, with no stage in between, must not recurse forever
_depth: ContextVar[int] = ContextVar("funnel_link_depth", default=0)


class LinkFailed(WorkflowFailed):
    """Starting a linked workflow failed; raised once, not re-wrapped by every enclosing link."""


@dataclass(frozen=True)
class LinkView:
    """One link as seen from an instance: the other instance, and what was carried over to it."""

    kind: str  # the declared link name, e.g. "project"
    direction: Literal["started", "started_by"]  # this instance started the other / was started by it
    instance_id: int
    workflow: str
    status: str
    stage: str | None
    customer_id: int | None
    customer_tier: str | None
    copied: dict[str, Any]
    created_by: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LinkStarter:
    """The ChangeListener that starts what an instance's outcome declares, exactly once."""

    def after_change(self, event: ChangeEvent) -> None:
        if event.kind == "tier_changed" or event.instance.status == RUNNING:
            return
        outcome = _outcome(event)
        if outcome is None or not outcome.starts:
            return
        token = _depth.set(_depth.get() + 1)
        try:
            if _depth.get() > MAX_DEPTH:
                raise LinkFailed(f"funnel:starts nests deeper than {MAX_DEPTH} workflows: check for "
                                 "workflows whose outcomes start each other")
            for starts in outcome.starts:
                _start(event, outcome, starts)
        finally:
            _depth.reset(token)


def _outcome(event: ChangeEvent) -> Outcome | None:
    """The outcome of the end event the instance just reached (read from its state, not guessed)."""
    end = Workflow.restore(event.definition.specs, event.instance.state).end_event()
    return event.definition.meta.outcome_for(end) if end else None


def _start(event: ChangeEvent, outcome: Outcome, starts: Starts) -> None:
    """Start one follow-up and link it; the check names the conflict, the unique constraint backs it up."""
    source = event.instance
    assert source.id is not None
    taken = select(InstanceLink.id).where(InstanceLink.from_instance_id == source.id,
                                          InstanceLink.kind == starts.link)
    if event.session.exec(taken).first() is not None:
        raise Conflict(f"instance {source.id} has already started its {starts.link}")
    copied = {name: source.data[name] for name in starts.copy if name in source.data}
    try:
        target = event.funnel.start_in(
            event.session, starts.workflow, copied, actor=event.actor, customer_id=source.customer_id,
            customer_tier=None if source.customer_id is not None else source.customer_tier,
        )
    except (LinkFailed, Conflict):  # already explained, or a concurrent writer: retrying is the answer
        raise
    except FunnelError as err:
        raise LinkFailed(f"reaching '{outcome.status}' starts workflow '{starts.workflow}' as the "
                         f"{starts.link}, which failed, so nothing was saved: {err.message}") from err
    assert target.id is not None
    event.session.add(InstanceLink(from_instance_id=source.id, to_instance_id=target.id, kind=starts.link,
                                   copied=copied, created_by=event.actor, created_at=event.now))
    try:
        event.session.flush()
    except sa.exc.IntegrityError as err:
        raise Conflict(f"instance {source.id} has already started its {starts.link}") from err


def links_of(funnel: Funnel, instance_id: int) -> list[LinkView]:
    """Both directions: the project an opportunity started, the opportunity (and customer) a project came from."""
    if not isinstance(instance_id, int) or isinstance(instance_id, bool):
        raise InvalidInput("instance id must be a whole number", "instance_id")
    with read_session(funnel.engine) as session:
        if session.get(Instance, instance_id) is None:
            raise NotFound(f"instance {instance_id} does not exist")
        stmt = select(InstanceLink).where(or_(col(InstanceLink.from_instance_id) == instance_id,
                                              col(InstanceLink.to_instance_id) == instance_id))
        out: list[LinkView] = []
        for link in session.exec(stmt.order_by(col(InstanceLink.id))):
            started = link.from_instance_id == instance_id
            other = session.get(Instance, link.to_instance_id if started else link.from_instance_id)
            assert other is not None and other.id is not None
            out.append(LinkView(
                kind=link.kind, direction="started" if started else "started_by", instance_id=other.id,
                workflow=other.workflow, status=other.status, stage=other.stage, customer_id=other.customer_id,
                customer_tier=other.customer_tier, copied=dict(link.copied), created_by=link.created_by,
                created_at=link.created_at,
            ))
        return out

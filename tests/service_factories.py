"""Factories for service requests (tickets) and routing slips: valid data per stage, helpers to walk them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from SpiffWorkflow.util.task import TaskState
from sqlmodel import Session, col, select

from engine.instances import Funnel
from engine.models import AuditEvent, HumanTask, Instance
from engine.models.service import TicketMetrics
from engine.spiff import Workflow
from engine.views import InstanceView

# ---------------------------------------------------------------- service requests

TICKET_STAGES = ["Intake", "Triage and routing", "First response", "Resolution", "Customer confirmation"]
INTAKE: dict[str, Any] = {
    "customer_name": "Acme Steel", "contact_name": "Dana Li", "channel": "phone",
    "category": "technical_service", "priority": "high", "description": "Coil line stops every hour",
}
TRIAGE: dict[str, Any] = {"routed_to": "field-service-north"}
FIRST_RESPONSE: dict[str, Any] = {"first_response": "Technician booked for tomorrow 8:00"}
RESOLUTION: dict[str, Any] = {"resolution": "Replaced the worn encoder"}
ACCEPT: dict[str, Any] = {"resolution_accepted": True, "satisfaction": 4}
STAGE_DATA = [INTAKE, TRIAGE, FIRST_RESPONSE, RESOLUTION, ACCEPT]


def reject(reason: str = "Still stops twice a day") -> dict[str, Any]:
    return {"resolution_accepted": False, "rejection_reason": reason}


def start_ticket(funnel: Funnel, *, actor: str = "desk1", **kwargs: Any) -> InstanceView:
    """A new service request in Intake (no data yet unless given)."""
    data = kwargs.pop("data", {})
    return funnel.start("service_request", data, actor=actor, **kwargs)


def ticket_at(funnel: Funnel, stage: str, *, actor: str = "desk1", intake: dict[str, Any] | None = None,
              **kwargs: Any) -> InstanceView:
    """A service request advanced with valid data (intake overridden by `intake`) until it is in `stage`."""
    view = start_ticket(funnel, actor=actor, **kwargs)
    while view.stage != stage:
        assert view.stage_order is not None
        data = {**INTAKE, **(intake or {})} if view.stage_order == 1 else STAGE_DATA[view.stage_order - 1]
        view = funnel.advance(view.id, data, actor=actor)
    return view


# ---------------------------------------------------------------- routing slips

ITEM: dict[str, Any] = {
    "title": "Rival Co cuts coil prices by 8%", "content": "Seen in two tenders in the north region",
    "source": "Sales visit at Acme Steel",
}


def start_slip(funnel: Funnel, departments: Any, *, actor: str = "author1", **extra: Any) -> InstanceView:
    """A routing slip written and sent to `departments` (or refused, if they are not valid)."""
    view = funnel.start("routing_slip", {}, actor=actor)
    return funnel.advance(view.id, {**ITEM, "departments": departments, **extra}, actor=actor)


def department_task(view: InstanceView, department: str) -> str:
    """The id of the open task of one department on a slip."""
    [task] = [t for t in view.open_tasks if t.name == f"Acknowledge and handle: {department}"]
    return task.id


def answer(funnel: Funnel, instance_id: int, department: str, *, actor: str | None = None,
           note: str | None = None) -> InstanceView:
    """One department acknowledges the slip and records how it handled it."""
    task_id = department_task(funnel.get(instance_id), department)
    data = {"acknowledged": True, "handling_note": note or f"{department}: noted and acted on"}
    return funnel.advance(instance_id, data, actor=actor or f"head-{department.lower()}", task_id=task_id)


def fire_chase(funnel: Funnel, instance_id: int) -> None:
    """Make the slip's chase timer fire now (firing timers through the engine with its clock is a later
    issue): move its due time into the past, let Spiff fire it, store the state."""
    with Session(funnel.engine) as session:
        row = session.get(Instance, instance_id)
        assert row is not None
        wf = Workflow.restore(funnel.definitions.get(row.definition_version_id).specs, row.state)
        [timer] = [t for t in wf.wf.get_tasks(state=TaskState.WAITING) if t.task_spec.name == "chase_timer"]
        timer._set_internal_data(event_value=(datetime.now(UTC) - timedelta(minutes=1)).isoformat())
        wf.refresh_timers()
        row.state = wf.state()
        session.add(row)
        session.commit()


def task_states(funnel: Funnel, instance_id: int, spec_name: str) -> list[str]:
    """The Spiff states of every task of one spec in the stored workflow (e.g. the chase timer)."""
    with Session(funnel.engine) as session:
        row = session.get(Instance, instance_id)
        assert row is not None
        wf = Workflow.restore(funnel.definitions.get(row.definition_version_id).specs, row.state)
    return [TaskState.get_name(t.state) for t in wf.wf.get_tasks() if t.task_spec.name == spec_name]


# ---------------------------------------------------------------- what is stored


def snapshot(funnel: Funnel, instance_id: int) -> dict[str, Any]:
    """Everything stored about an instance (with its ticket metrics), to prove a refusal wrote nothing."""
    with Session(funnel.engine) as session:
        row = session.get(Instance, instance_id)
        assert row is not None
        events = session.exec(select(AuditEvent).where(AuditEvent.instance_id == instance_id)).all()
        tasks = session.exec(select(HumanTask).where(HumanTask.instance_id == instance_id)).all()
        metrics = session.get(TicketMetrics, instance_id)
        return {"row": row.model_dump(), "events": len(events), "tasks": [t.model_dump() for t in tasks],
                "metrics": metrics.model_dump() if metrics else None}


def instance_row(funnel: Funnel, instance_id: int) -> Instance:
    with Session(funnel.engine) as session:
        row = session.get(Instance, instance_id)
        assert row is not None
        return row


def task_rows(funnel: Funnel, instance_id: int) -> list[HumanTask]:
    with Session(funnel.engine) as session:
        stmt = select(HumanTask).where(HumanTask.instance_id == instance_id).order_by(col(HumanTask.id))
        return list(session.exec(stmt))


def count_instances(funnel: Funnel) -> int:
    with Session(funnel.engine) as session:
        return len(session.exec(select(Instance.id)).all())

"""Read models handed to the API and CLI: plain data, no ORM objects, no SpiffWorkflow objects."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from typing import Any

from engine.models import HumanTask, Instance


@dataclass(frozen=True)
class TaskView:
    """An open (or closed) human task as a person sees it."""

    id: str
    name: str
    stage: str | None
    lane: str | None
    role: str | None
    status: str
    assignee: str | None
    created_at: datetime

    @classmethod
    def of(cls, task: HumanTask) -> TaskView:
        return cls(task.task_uuid, task.name, task.stage, task.lane, task.role, task.status,
                   task.assignee, task.created_at)


@dataclass(frozen=True)
class InstanceView:
    """An instance's public state: columns, business data and open tasks (never the raw JSON state)."""

    id: int
    workflow: str
    definition_version_id: int
    stage: str | None
    stage_order: int | None
    status: str
    assignee: str | None
    customer_id: int | None
    customer_tier: str | None
    amount: float | None
    probability: float | None
    row_version: int
    data: dict[str, Any]
    created_by: str
    created_at: datetime
    updated_at: datetime
    open_tasks: list[TaskView] = field(default_factory=list)
    waiting_since: datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain values; `data` copied one level (asdict deep-copied every value: ~60 us per reply)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["data"] = dict(self.data)
        out["open_tasks"] = [asdict(t) for t in self.open_tasks]
        return out


def instance_view(row: Instance, tasks: list[HumanTask]) -> InstanceView:
    assert row.id is not None
    return InstanceView(
        id=row.id, workflow=row.workflow, definition_version_id=row.definition_version_id,
        stage=row.stage, stage_order=row.stage_order, status=row.status, assignee=row.assignee,
        customer_id=row.customer_id, customer_tier=row.customer_tier, amount=row.amount,
        probability=row.probability, row_version=row.row_version, data=dict(row.data),
        created_by=row.created_by, created_at=row.created_at, updated_at=row.updated_at,
        open_tasks=[TaskView.of(t) for t in tasks], waiting_since=row.waiting_since,
    )

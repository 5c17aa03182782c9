"""Request and response models of the HTTP API: the contract integrators code against, with examples.

Request models are strict (no type coercion) and refuse unknown fields, so what the OpenAPI document
promises is exactly what is accepted; texts never carry NUL characters (PostgreSQL cannot store them).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

MAX_ID = 2**31 - 1  # ids are 32-bit integers on every backend
NO_NUL = r"^[^\x00]*$"
Tier = Literal["A", "B", "C", "D"]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
Version = Annotated[int, Field(ge=1, le=MAX_ID - 1, description="the row_version you last read")]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=NO_NUL)]
Reason = Annotated[str, StringConstraints(min_length=1, max_length=2000, pattern=NO_NUL)]
TaskId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NO_NUL)]
MAX_NESTING = 32
MAX_WHOLE = 2**63 - 1


def _storable(value: Any, depth: int = 0) -> Any:
    """Business data must be storable and computable: no NUL characters or lone surrogates in texts, whole
    numbers within 64 bits (amounts become floats), bounded nesting."""
    if depth > MAX_NESTING:
        raise ValueError(f"data is nested more than {MAX_NESTING} levels deep")
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_WHOLE <= value <= MAX_WHOLE:
        raise ValueError(f"whole numbers in data must lie within +-{MAX_WHOLE}")
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("texts in data must not contain NUL characters")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError("texts in data must be valid Unicode (no lone surrogates)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _storable(key, depth + 1)
            _storable(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _storable(item, depth + 1)
    return value


Data = Annotated[dict[str, Any], AfterValidator(_storable),
                 Field(description="business data: field names are variables in workflow expressions")]


class Request(BaseModel):
    """Base of request bodies: strict types, unknown fields refused."""

    model_config = ConfigDict(strict=True, extra="forbid")


class Problem(BaseModel):
    """RFC 9457 problem details: every error answer has this shape and says what to fix."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [{
        "type": "urn:funnel:problem:transition_refused", "title": "Request cannot be carried out", "status": 422,
        "detail": "cannot leave stage 'Qualification': 1 criterion(s) not met", "code": "transition_refused",
        "unmet": [{"criterion": "budget_confirmed", "message": "Confirm the customer's budget (budget_confirmed)."}],
    }]})

    type: str
    title: str
    status: int
    detail: str
    code: str | None = None
    unmet: list[dict[str, Any]] | None = Field(default=None, description="advance: every unmet criterion")
    current_version: int | None = Field(default=None, description="conflict: the version to reload")
    errors: list[dict[str, Any]] | None = Field(default=None, description="invalid request: field and message")
    problems: list[dict[str, Any]] | None = Field(default=None, description="definition: file, line, element")
    field: str | None = None


# ---------------------------------------------------------------- instances and tasks


class TaskOut(BaseModel):
    id: str
    name: str
    stage: str | None
    lane: str | None
    role: str | None
    status: str
    assignee: str | None
    created_at: datetime


class InstanceOut(BaseModel):
    """An instance's state: where it is, who has it, its data and open tasks (row_version for concurrency)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "id": 42, "workflow": "sales_funnel", "definition_version": 1, "definition_version_id": 1,
        "stage": "Qualification", "stage_order": 2, "status": "running", "assignee": "alice", "customer_id": 7,
        "customer_tier": "B", "amount": 120000.0, "probability": 0.2, "row_version": 2,
        "data": {"customer_name": "Acme Steel", "estimated_amount": 120000}, "created_by": "alice",
        "created_at": "2026-11-23T09:00:00Z", "updated_at": "2026-11-23T10:00:00Z", "waiting_since": None,
        "open_tasks": [{"id": "5f0c...", "name": "Qualification", "stage": "Qualification", "lane": "Sales rep",
                        "role": "rep", "status": "ready", "assignee": "alice",
                        "created_at": "2026-11-23T10:00:00Z"}],
    }]})

    id: int
    workflow: str
    definition_version: int
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
    waiting_since: datetime | None
    open_tasks: list[TaskOut]


class EventOut(BaseModel):
    """One audit entry: who did what, when, from which stage to which, with which data changes and why."""

    id: int
    at: datetime
    actor: str
    kind: str
    from_stage: str | None
    to_stage: str | None
    changes: dict[str, Any]
    reason: str | None
    row_version: int


class LinkOut(BaseModel):
    kind: str
    direction: Literal["started", "started_by"]
    instance_id: int
    workflow: str
    status: str
    stage: str | None
    customer_id: int | None
    customer_tier: str | None
    copied: dict[str, Any]
    created_by: str
    created_at: datetime


class ClockEventOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    at: datetime
    kind: str
    cycle: int
    target_hours: float | None
    actor: str
    reason: str | None


class ClockOut(BaseModel):
    """One SLA clock as at now: business time consumed and remaining, deadline, warning, its ledger."""

    model_config = ConfigDict(extra="allow")

    id: int
    instance_id: int
    name: str
    title: str
    task_id: str | None
    stage: str | None
    calendar: str
    status: str
    cycle: int
    target_hours: float | None
    consumed: str
    consumed_seconds: float
    remaining: str | None
    remaining_seconds: float | None
    deadline: datetime | None
    warning_at: datetime | None
    breached: bool
    at_risk: bool
    started_at: datetime
    stopped_at: datetime | None
    events: list[ClockEventOut]
    previous_cycles: list[dict[str, Any]]


class InstanceDetail(InstanceOut):
    """An instance with its linked instances, history and SLA clocks."""

    links: list[LinkOut]
    history: list[EventOut]
    sla: list[ClockOut]


class InstanceList(BaseModel):
    items: list[InstanceOut]
    total: int
    limit: int
    offset: int


class StartIn(Request):
    """Start an instance of a workflow's newest version at its first stage."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"workflow": "sales_funnel", "customer_id": 7, "data": {"customer_name": "Acme Steel", "need": "coil"}},
        {"workflow": "service_request", "data": {}, "waiting": True, "waiting_reason": "waiting for photos"},
    ]})

    workflow: Name
    customer_id: Id | None = None
    customer_tier: Tier | None = Field(default=None, description="only without customer_id (else the customer's)")
    data: Data = Field(default_factory=dict)
    waiting: bool = Field(default=False, description="created already waiting on the customer")
    waiting_reason: Reason | None = None


class AdvanceIn(Request):
    """Complete the current stage (or the task `task_id`) with this data, if every exit criterion holds."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"data": {"budget_confirmed": True, "decision_maker": "CFO", "expected_close_date": "2027-02-01"},
         "expected_version": 2},
    ]})

    data: Data = Field(default_factory=dict)
    expected_version: Version | None = None
    task_id: TaskId | None = Field(default=None, description="which open task, when several are open")


class CompleteIn(Request):
    """Complete this task with this data (the stage's exit criteria apply)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"data": {"acknowledged": True, "handling_note": "noted"}, "expected_version": 3}]})

    data: Data = Field(default_factory=dict)
    expected_version: Version | None = None


class MoveIn(Request):
    """Go back to an earlier stage, or skip ahead, as the definition's policy allows; the reason is audited."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"to_stage": "Qualification", "reason": "budget was withdrawn", "expected_version": 4}]})

    to_stage: Name
    reason: Reason
    data: Data = Field(default_factory=dict)
    expected_version: Version | None = None


class WaitingIn(Request):
    """Start (true) or end (false) waiting on the customer; starting needs a reason."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"waiting": True, "reason": "waiting for the customer's photos"}, {"waiting": False}]})

    waiting: bool
    reason: Reason | None = None
    expected_version: Version | None = None


class CloseIn(Request):
    """Close early, cancelling open tasks (listed as unanswered), where the definition allows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"reason": "the item is obsolete"}]})

    reason: Reason
    expected_version: Version | None = None


class AssignIn(Request):
    """Give the open work to someone else (managers of the team, admins); the reason is audited."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"assignee": "bob", "reason": "alice is on leave"}]})

    assignee: Name
    reason: Reason
    task_id: TaskId | None = None
    expected_version: Version | None = None


class QueueItemOut(BaseModel):
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


class TaskList(BaseModel):
    queue: Literal["mine", "team", "unassigned"]
    items: list[QueueItemOut]
    total: int
    limit: int
    offset: int


# ---------------------------------------------------------------- health


class HealthOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"status": "ok", "database": "reachable", "ticker": {"alive": True}}]})

    status: Literal["ok", "degraded"] = Field(description="degraded: the database answers but no ticker is alive")
    database: Literal["reachable"]
    ticker: dict[str, Any] | None = Field(default=None, description="scheduler heartbeat and outbox backlog")

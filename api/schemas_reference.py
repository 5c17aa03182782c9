"""API models of reference data and reports: workflow definitions, verdicts, customers, the funnel report."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import SkipJsonSchema

from api.schemas import NO_NUL, ClockOut, Id, Name, Reason, Request, Tier, Version

Email = Annotated[str, StringConstraints(min_length=3, max_length=254, pattern=NO_NUL)]
Short = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL)]


# ---------------------------------------------------------------- workflows


class CriterionOut(BaseModel):
    name: str
    message: str
    kind: str
    test: str | None = None
    when: str | None = None
    children: list[CriterionOut] = Field(default_factory=list)


class StageOut(BaseModel):
    task: str
    name: str
    order: int
    probability: float | None
    criteria: list[CriterionOut]
    lane: str | None = None
    role: str | None = None
    assignment: str | None = None


class WorkflowVersionOut(BaseModel):
    """One stored version of a workflow: stages with their exit criteria, policies and (when present) SLA policy."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "workflow": "sales_funnel", "version": 1, "id": 1, "content_hash": "9f2c...", "source": "sales_funnel.bpmn",
        "title": "Sales funnel", "policy": {"backward": "with-reason", "skip": "never", "waiting": "never",
                                            "close": "never"},
        "stages": [{"task": "identify", "name": "Identify opportunity", "order": 1, "probability": 0.1,
                    "criteria": [{"name": "need", "message": "Describe the need.", "kind": "test",
                                  "test": "filled(need)"}]}],
        "outcomes": [{"end_event": "won", "status": "won", "probability": 1.0, "starts": []}], "sla": None,
        "created_at": "2026-11-23T09:00:00Z"}]})

    workflow: str
    version: int
    id: int
    content_hash: str
    source: str
    title: str | None
    policy: dict[str, str] | None
    stages: list[StageOut]
    outcomes: list[dict[str, Any]]
    sla: Any = Field(default=None, description="SLA policy summary, when the definition declares one")
    created_at: datetime


class LintProblemOut(BaseModel):
    file: str
    line: int | None
    element: str | None
    severity: str
    message: str


class VerdictOut(BaseModel):
    file: str
    kind: str
    ok: bool
    processes: list[str]
    problems: list[LintProblemOut]


class ValidationOut(BaseModel):
    """The linter's verdict on each uploaded file (the same as `funnel validate`)."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"ok": False, "verdicts": [{
        "file": "deal.bpmn", "kind": "bpmn", "ok": False, "processes": ["deal"],
        "problems": [{"file": "deal.bpmn", "line": 12, "element": "script1", "severity": "error",
                      "message": "imports are not allowed in expressions"}]}]}]})

    ok: bool
    verdicts: list[VerdictOut]


class PublishedOut(BaseModel):
    """A published version; `new` is false when the newest version already had this content."""

    workflow: str
    version: int
    id: int
    content_hash: str
    new: bool


# ---------------------------------------------------------------- customers


class ContactIn(Request):
    name: Name
    email: Email
    time_zone: Short = Field(description="IANA time zone, e.g. Europe/Berlin")
    phone: Annotated[str, StringConstraints(max_length=40, pattern=NO_NUL)] | None = None
    role: Short | None = None


class CustomerIn(Request):
    """A new customer with its tier (A strategic, B key, C general, D abandon/potential) and first contacts."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "name": "Acme Steel", "tier": "B", "region": "north", "contacts": [
            {"name": "Dana Li", "email": "dana.li@acme-steel.example", "time_zone": "Asia/Shanghai"}]}]})

    name: Name
    tier: Tier
    region: Short | None = None
    parent_id: Id | None = None
    contacts: list[ContactIn] = Field(default_factory=list, max_length=50)


class CustomerPatch(Request):
    """Change some fields; a tier change needs a reason (audited; re-derives SLA deadlines of open work)."""

    model_config = ConfigDict(json_schema_extra={"examples": [
        {"tier": "A", "reason": "signed a framework contract"}, {"region": "south"}]})

    name: Name | SkipJsonSchema[None] = None
    tier: Tier | SkipJsonSchema[None] = None
    region: Short | None = None
    parent_id: Id | None = None
    reason: Reason | None = None
    expected_version: Version | None = None


class ContactOut(BaseModel):
    id: int
    customer_id: int
    name: str
    email: str
    phone: str | None
    time_zone: str
    role: str | None
    created_at: datetime


class CustomerOut(BaseModel):
    id: int
    name: str
    tier: str
    parent_id: int | None
    region: str | None
    row_version: int
    created_by: str
    created_at: datetime
    updated_at: datetime
    contacts: list[ContactOut]
    subsidiaries: list[int]


class CustomerList(BaseModel):
    items: list[CustomerOut]
    total: int
    limit: int
    offset: int


class CustomerEventOut(BaseModel):
    id: int
    at: datetime
    actor: str
    kind: str
    changes: dict[str, Any]
    reason: str | None


# ---------------------------------------------------------------- reports and SLA


class StageFiguresOut(BaseModel):
    stage: str
    order: int
    probability: float | None
    count: int = Field(description="running instances in this stage now")
    amount: float
    weighted_amount: float = Field(description="amount x the stage's win probability")
    entered: int = Field(description="instances of the population that ever entered this stage")
    conversion_to_next: float | None = Field(description="share of those that went on to a later stage")
    median_seconds_in_stage: int | None = Field(description="median of finished stays in this stage")


class FunnelReportOut(BaseModel):
    """The funnel of one workflow over the instances created in the period, by team, region and tier."""

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "workflow": "sales_funnel", "since": "2026-01-01T00:00:00Z", "until": None, "teams": ["sales_north"],
        "region": None, "tier": None, "instances": 12, "outcomes": {"won": 2, "lost": 1},
        "total_amount": 840000.0, "total_weighted_amount": 241000.0,
        "stages": [{"stage": "Identify opportunity", "order": 1, "probability": 0.1, "count": 3, "amount": 310000.0,
                    "weighted_amount": 31000.0, "entered": 12, "conversion_to_next": 0.75,
                    "median_seconds_in_stage": 172800}]}]})

    workflow: str
    since: datetime | None
    until: datetime | None
    teams: list[str] | None
    region: str | None
    tier: str | None
    instances: int
    stages: list[StageFiguresOut]
    outcomes: dict[str, int]
    total_amount: float
    total_weighted_amount: float


class SlaItemOut(BaseModel):
    instance_id: int
    workflow: str
    stage: str | None
    customer_tier: str | None
    assignee: str | None
    clock: ClockOut


class SlaList(BaseModel):
    """Open SLA clocks in this state, soonest deadline first."""

    state: Literal["at_risk", "breached", "all"]
    items: list[SlaItemOut]
    limit: int
    offset: int

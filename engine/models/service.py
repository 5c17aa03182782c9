"""Service-desk tables (issue 3B): per-ticket figures that staff are assessed on, kept beside the instance."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from engine.clock import utcnow
from engine.models.types import timestamp


class TicketMetrics(SQLModel, table=True):
    """One row per service request, maintained by engine.service_metrics in each change's transaction.

    Durations are whole seconds of wall-clock time minus the time spent waiting on the customer;
    business-hours figures come with the SLA calendar.
    """

    __tablename__ = "ticket_metrics"

    instance_id: int = Field(foreign_key="instance.id", primary_key=True)
    category: str | None = Field(default=None, max_length=40)
    priority: str | None = Field(default=None, max_length=20)
    created_at: datetime = timestamp(nullable=False)
    first_response_at: datetime | None = timestamp(nullable=True)
    first_response_by: str | None = Field(default=None, max_length=200)
    first_response_seconds: int | None = None
    resolved_by: str | None = Field(default=None, index=True, max_length=200)
    reopen_count: int = Field(default=0, nullable=False)
    waiting_seconds: int = Field(default=0, nullable=False)
    closed_at: datetime | None = timestamp(nullable=True)
    outcome: str | None = Field(default=None, max_length=40)
    handling_seconds: int | None = None
    satisfaction: int | None = None
    updated_at: datetime = timestamp(nullable=False, default=utcnow)

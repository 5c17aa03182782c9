"""Reports: the sales funnel per stage, and work whose SLA clock is at risk or breached."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BeforeValidator

from api.auth import FunnelDep, UserDep
from api.errors import responses
from api.routes.common import Filter, Offset, utc
from api.schemas import NO_NUL, Tier
from api.schemas_reference import FunnelReportOut, SlaItemOut, SlaList
from engine import permissions, reports, sla_queries

router = APIRouter(tags=["reports"])


def _iso(value: object) -> object:
    """Only ISO 8601 texts: pydantic would also read a bare number as a Unix timestamp."""
    if isinstance(value, str) and not re.match(r"\d{4}-\d{2}-\d{2}", value):
        raise ValueError("use an ISO 8601 date and time, e.g. 2026-01-01T00:00:00Z")
    return value


Moment = Annotated[datetime | None, BeforeValidator(_iso),
                   Query(description="ISO 8601 date and time; without an offset it is UTC")]


@router.get("/api/reports/funnel", responses=responses(403, 404, 422))
def funnel(
    f: FunnelDep, user: UserDep,
    workflow: Annotated[str, Query(min_length=1, max_length=200, pattern=NO_NUL)] = "sales_funnel",
    since: Moment = None, until: Moment = None, team: Filter = None, region: Filter = None, tier: Tier | None = None,
) -> FunnelReportOut:
    """Per stage: instances in it now, their amount and weighted amount (x win probability), how many entered it,
    conversion to a later stage, median time in it; over the instances created in [since, until).
    Managers see their own teams; process owners and admins every team."""
    teams = permissions.report_teams(user, team)
    report = reports.funnel_report(f, workflow=workflow, since=utc(since), until=utc(until), teams=teams,
                                   region=region, tier=tier)
    return FunnelReportOut.model_validate(report.to_dict())


@router.get("/api/sla", responses=responses(403, 422))
def sla(
    f: FunnelDep, user: UserDep, state: Literal["at_risk", "breached", "all"] = "at_risk",
    workflow: Filter = None, assignee: Filter = None,
    limit: Annotated[int, Query(ge=1, le=sla_queries.MAX_LIMIT)] = 100, offset: Offset = 0,
) -> SlaList:
    """Open SLA clocks past their warning time (at_risk) or deadline (breached), soonest deadline first.
    Reps see their own work only."""
    who = permissions.sla_assignee(user, assignee)
    items = sla_queries.sla_items(f.engine, state=state, now=f.clock(), limit=limit, offset=offset,
                                  workflow=workflow, assignee=who)
    return SlaList(state=state, items=[SlaItemOut.model_validate(i.to_dict()) for i in items], limit=limit,
                   offset=offset)

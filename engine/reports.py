"""The funnel report (per stage: count, amount, weighted amount, conversion, median time) and service gauges.

Figures come from the instance rows (where each instance is now) and the append-only audit log
(every stage each instance entered and when), so a report always agrees with the recorded history.
The population is the instances of one workflow created in the period, narrowed by team, region and tier.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, func, select

from engine.db import read_session
from engine.errors import InvalidInput
from engine.instances import RUNNING, Funnel
from engine.models import AuditEvent, HumanTask, Instance
from engine.models.customers import TIERS, Customer
from engine.models.people import Team, TeamMember, User
from engine.stages import Stage

CHUNK = 500  # ids per IN (...) list: well under every backend's parameter limit


@dataclass(frozen=True)
class StageFigures:
    """One stage of the funnel: what is in it now and how instances moved through it."""

    stage: str
    order: int
    probability: float | None
    count: int  # running instances in this stage now
    amount: float  # their amount
    weighted_amount: float  # amount x the stage's win probability
    entered: int  # instances of the population that ever entered this stage
    conversion_to_next: float | None  # of those, the share that went on to a later stage (None: last or none)
    median_seconds_in_stage: int | None  # over finished stays in the stage (None: no stay has ended)


@dataclass(frozen=True)
class FunnelReport:
    """The whole report with the filters it was computed for."""

    workflow: str
    since: datetime | None
    until: datetime | None
    teams: list[str] | None
    region: str | None
    tier: str | None
    instances: int
    stages: list[StageFigures] = field(default_factory=list)
    outcomes: dict[str, int] = field(default_factory=dict)  # finished instances by status (won, lost...)
    total_amount: float = 0.0
    total_weighted_amount: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def funnel_report(funnel: Funnel, *, workflow: str = "sales_funnel", since: datetime | None = None,
                  until: datetime | None = None, teams: frozenset[str] | None = None, region: str | None = None,
                  tier: str | None = None) -> FunnelReport:
    """Compute the funnel of `workflow` over instances created in [since, until); teams None = every team."""
    _check(since=since, until=until, region=region, tier=tier)
    stages = sorted(funnel.definitions.latest(workflow).meta.stages, key=lambda s: s.order)
    with read_session(funnel.engine) as session:
        rows = _population(session, workflow, since=since, until=until, teams=teams, tier=tier)
        if region is not None:
            regions = _customer_regions(session, {r.customer_id for r in rows if r.customer_id is not None})
            rows = [r for r in rows if _region_of(r, regions) == region.strip().lower()]
        events = _events(session, [r.id for r in rows if r.id is not None])
    entered, stays, highest = _journeys(events, stages)
    figures = [_figures(stage, rows, entered, stays, highest, last=i == len(stages) - 1)
               for i, stage in enumerate(stages)]
    outcomes = Counter(r.status for r in rows if r.status != RUNNING)
    return FunnelReport(
        workflow=workflow, since=since, until=until, teams=sorted(teams) if teams is not None else None,
        region=region, tier=tier, instances=len(rows), stages=figures, outcomes=dict(sorted(outcomes.items())),
        total_amount=round(sum(f.amount for f in figures), 2),
        total_weighted_amount=round(sum(f.weighted_amount for f in figures), 2),
    )


def instance_counts(engine: Engine) -> list[tuple[str, str, int]]:
    """(workflow, status, count) of every instance: the gauge behind /metrics."""
    with read_session(engine) as session:
        stmt = (select(Instance.workflow, Instance.status, func.count())
                .group_by(col(Instance.workflow), col(Instance.status)).order_by(col(Instance.workflow)))
        return [(w, s, int(n)) for w, s, n in session.exec(stmt)]


def open_task_counts(engine: Engine) -> list[tuple[str, int]]:
    """(workflow, open human tasks) for /metrics."""
    with read_session(engine) as session:
        stmt = (select(Instance.workflow, func.count()).select_from(HumanTask)
                .join(Instance, col(Instance.id) == col(HumanTask.instance_id))
                .where(HumanTask.status == "ready").group_by(col(Instance.workflow)).order_by(col(Instance.workflow)))
        return [(w, int(n)) for w, n in session.exec(stmt)]


# ---------------------------------------------------------------- internals


def _check(*, since: datetime | None, until: datetime | None, region: str | None, tier: str | None) -> None:
    for name, moment in (("since", since), ("until", until)):
        if moment is not None and moment.tzinfo is None:
            raise InvalidInput(f"{name} must carry a time zone (e.g. 2026-01-01T00:00:00Z)", name)
    if since is not None and until is not None and until <= since:
        raise InvalidInput("until must be after since", "until")
    if tier is not None and tier not in TIERS:
        raise InvalidInput(f"tier must be one of {', '.join(TIERS)}, not {tier!r}", "tier")
    if region is not None and (not region.strip() or len(region) > 100 or "\x00" in region):
        raise InvalidInput("region must be a non-empty text of at most 100 characters", "region")


def _population(session: Session, workflow: str, *, since: datetime | None, until: datetime | None,
                teams: frozenset[str] | None, tier: str | None) -> list[Instance]:
    stmt = select(Instance).where(Instance.workflow == workflow)
    if since is not None:
        stmt = stmt.where(col(Instance.created_at) >= since)
    if until is not None:
        stmt = stmt.where(col(Instance.created_at) < until)
    if tier is not None:
        stmt = stmt.where(Instance.customer_tier == tier)
    if teams is not None:
        members = select(User.login).join(TeamMember, col(TeamMember.user_id) == col(User.id)).join(
            Team, col(Team.id) == col(TeamMember.team_id)).where(col(Team.name).in_(teams or [""]))
        queued = select(HumanTask.instance_id).where(col(HumanTask.team).in_(teams or [""]))
        stmt = stmt.where(col(Instance.assignee).in_(members) | col(Instance.id).in_(queued))
    return list(session.exec(stmt.order_by(col(Instance.id))))


def _customer_regions(session: Session, ids: set[int]) -> dict[int, str | None]:
    found: dict[int, str | None] = {}
    for chunk in _chunks(sorted(ids)):
        stmt = select(Customer.id, Customer.region).where(col(Customer.id).in_(chunk))
        for customer_id, region in session.exec(stmt):
            found[customer_id or 0] = region
    return found


def _region_of(row: Instance, regions: dict[int, str | None]) -> str:
    """The customer's region, else the instance's own `region` field (as assignment rules route by it)."""
    region = (regions.get(row.customer_id) if row.customer_id is not None else None) or row.data.get("region")
    return region.strip().lower() if isinstance(region, str) else ""


def _events(session: Session, ids: list[int]) -> list[AuditEvent]:
    out: list[AuditEvent] = []
    for chunk in _chunks(ids):
        stmt = select(AuditEvent).where(col(AuditEvent.instance_id).in_(chunk), col(AuditEvent.to_stage).is_not(None))
        out.extend(session.exec(stmt.order_by(col(AuditEvent.instance_id), col(AuditEvent.id))))
    return out


def _journeys(events: Iterable[AuditEvent], stages: Sequence[Stage]
              ) -> tuple[dict[str, set[int]], dict[str, list[float]], dict[int, int]]:
    """Per stage: who entered it and how long each finished stay lasted; per instance: the highest order reached."""
    order = {s.name: s.order for s in stages}
    entered: dict[str, set[int]] = defaultdict(set)
    stays: dict[str, list[float]] = defaultdict(list)
    highest: dict[int, int] = {}
    current: tuple[int, str | None, datetime | None] = (0, None, None)
    for event in events:
        iid, stage, since = current if current[0] == event.instance_id else (event.instance_id, None, None)
        if event.to_stage != stage:
            if stage is not None and since is not None:
                stays[stage].append((event.at - since).total_seconds())
            if event.to_stage in order:
                stage, since = event.to_stage, event.at
                entered[stage].add(iid)
                highest[iid] = max(highest.get(iid, 0), order[stage])
            else:
                stage, since = None, None
        current = (iid, stage, since)
    return entered, stays, highest


def _figures(stage: Stage, rows: Sequence[Instance], entered: dict[str, set[int]], stays: dict[str, list[float]],
             highest: dict[int, int], *, last: bool) -> StageFigures:
    here = [r for r in rows if r.status == RUNNING and r.stage == stage.name]
    amount = sum(r.amount or 0.0 for r in here)
    weighted = sum((r.amount or 0.0) * (r.probability if r.probability is not None else stage.probability or 0.0)
                   for r in here)
    came = entered.get(stage.name, set())
    went_on = sum(1 for iid in came if highest.get(iid, 0) > stage.order)
    durations = stays.get(stage.name, [])
    return StageFigures(
        stage=stage.name, order=stage.order, probability=stage.probability, count=len(here),
        amount=round(amount, 2), weighted_amount=round(weighted, 2), entered=len(came),
        conversion_to_next=None if last or not came else round(went_on / len(came), 4),
        median_seconds_in_stage=int(statistics.median(durations)) if durations else None,
    )


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for start in range(0, len(ids), CHUNK):
        yield list(ids[start:start + CHUNK])

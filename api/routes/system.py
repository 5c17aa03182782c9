"""Operations: /health for load balancers and /metrics for Prometheus (neither needs a token)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

from api import scheduler
from api.auth import FunnelDep
from api.errors import problem, responses
from api.metrics import Labels, Registry, gauge
from api.schemas import HealthOut
from engine import reports
from engine.instances import Funnel

router = APIRouter(tags=["operations"])
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/health", response_model=HealthOut, responses=responses(503, auth=False))
def health(f: FunnelDep) -> Any:
    """The database answers, and whether a ticker (timers, escalations, e-mail) is alive anywhere."""
    try:
        ticker = scheduler.ticker_status(f.engine, f.clock())
    except SQLAlchemyError:
        return problem(503, "the database cannot be reached", type_="unavailable")
    return HealthOut(status="ok" if ticker["alive"] else "degraded", database="reachable", ticker=ticker)


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {PROMETHEUS: {"schema": {"type": "string"}}}}})
async def metrics(request: Request, f: FunnelDep) -> PlainTextResponse:
    """Prometheus text format: instances by workflow and status, open tasks, outbox, ticker, HTTP requests."""
    registry: Registry = request.app.state.metrics
    lines = await run_in_threadpool(_engine_gauges, f)
    return PlainTextResponse("\n".join([*lines, *registry.render()]) + "\n", media_type=PROMETHEUS)


def _engine_gauges(f: Funnel) -> list[str]:
    instances = [((("workflow", w), ("status", s)), float(n)) for w, s, n in reports.instance_counts(f.engine)]
    tasks: list[tuple[Labels, float]] = [((("workflow", w),), float(n)) for w, n in reports.open_task_counts(f.engine)]
    ticker = scheduler.ticker_status(f.engine, f.clock())
    outbox = [((("state", k),), float(v)) for k, v in ticker["outbox"].items()]
    return [*gauge("funnel_instances", "Instances by workflow and status.", instances),
            *gauge("funnel_open_tasks", "Open human tasks by workflow.", tasks),
            *gauge("funnel_outbox_messages", "E-mails in the outbox: unsent, due now, failed for good.", outbox),
            *gauge("funnel_ticker_alive", "1 when a ticker beat recently.", [((), 1.0 if ticker["alive"] else 0.0)])]

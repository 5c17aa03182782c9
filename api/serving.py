"""`funnel serve`: the API in one or more uvicorn worker processes, each with its own ticker beside it.

One process runs Python on one core at a time, so a single worker leaves every other core idle however many
requests wait. With `workers` > 1, uvicorn's supervisor starts that many processes on the same port and
restarts one that dies. The parent (api.cli.serve) has already migrated the schema, published changed
workflow files and seeded the demo, so the workers only open the engine (no two race to migrate). Each
worker ticks too, unless the ticker is off: the database decides what is due and claims each row for one
worker (design.md), so any number of tickers fire every event exactly once.

Per worker, not shared: the workflow and definition caches (keyed by row version and hash, so never stale),
the HTTP request counters of /metrics (the engine gauges there are read from the database) and the database
connection pool (up to 15 connections each: on PostgreSQL, workers x 15 must stay under max_connections).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import scheduler as background
from api.app import Lifespan, create_app, steady_gc
from engine.bootstrap import open_funnel
from engine.settings import get_settings

TICKER_ENV = "FUNNEL_SERVE_TICKER"  # how the parent tells its workers whether to tick ("0": no)
FACTORY = "api.serving:served_app"


def served_app() -> FastAPI:
    """uvicorn's app factory, called in each worker: the engine on the configured database, ticker at startup."""
    settings = get_settings()
    funnel = open_funnel(settings)  # up to date already: the migration and publication find nothing to do
    ticker = background.Ticker(funnel, settings) if os.environ.get(TICKER_ENV, "1") != "0" else None
    return create_app(funnel, lifespan=_running(ticker))


def _running(ticker: background.Ticker | None) -> Lifespan:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        with background.running(ticker):
            steady_gc()  # after start-up, so its objects are frozen out of every collection (api.app.steady_gc)
            yield

    return lifespan


def serve(*, host: str, port: int, workers: int, ticker: bool, log_level: str = "info",
          access_log: bool = True) -> None:
    """Serve until SIGINT/SIGTERM: `workers` processes of `served_app` (one: in this process)."""
    import uvicorn

    os.environ[TICKER_ENV] = "1" if ticker else "0"  # workers inherit the environment and read their settings
    uvicorn.run(FACTORY, factory=True, host=host, port=port, workers=workers, log_level=log_level,
                access_log=access_log)

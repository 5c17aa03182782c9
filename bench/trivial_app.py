"""The HTTP baseline: a trivial FastAPI JSON endpoint, served exactly like ours."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from api.app import steady_gc


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    steady_gc()  # as api.serving's workers do at startup
    yield


app = FastAPI(lifespan=_lifespan)


@app.post("/api/instances/{instance_id}/advance")
def advance(instance_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": instance_id, "stage": "echo", "row_version": 1, "data": body.get("data", {})}

"""The HTTP baseline: a trivial FastAPI JSON endpoint, served exactly like ours."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

app = FastAPI()


@app.post("/api/instances/{instance_id}/advance")
def advance(instance_id: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"id": instance_id, "stage": "echo", "row_version": 1, "data": body.get("data", {})}

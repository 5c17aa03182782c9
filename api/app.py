"""FastAPI application factory: read-only views of workflows and instances plus health.

Writes over HTTP (with bearer-token authentication and roles) arrive with the HTTP API issue; until
then the service binds to 127.0.0.1 by default and exposes nothing that changes state.
"""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Path, Request

from api import errors
from engine.instances import Funnel


def get_funnel(request: Request) -> Funnel:
    funnel: Funnel = request.app.state.funnel
    return funnel


FunnelDep = Annotated[Funnel, Depends(get_funnel)]
InstanceId = Annotated[int, Path(ge=1, le=2**63 - 1, description="instance id")]


def create_app(funnel: Funnel) -> FastAPI:
    app = FastAPI(title="Funnel engine", version="0.1.0",
                  description="Sales-funnel workflow engine: stages, criteria, history.")
    app.state.funnel = funnel
    errors.install(app)

    @app.get("/health")
    def health(f: FunnelDep) -> dict[str, Any]:
        with f.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return {"status": "ok", "database": "reachable"}

    @app.get("/api/workflows")
    def workflows(f: FunnelDep) -> list[dict[str, Any]]:
        out = []
        for row in f.definitions.versions():
            out.append({"workflow": row.workflow, "version": row.version, "id": row.id,
                        "content_hash": row.content_hash, "source": row.source_name,
                        "title": row.meta.get("title"), "policy": row.meta.get("policy"),
                        "stages": row.meta.get("stages"), "created_at": row.created_at})
        return out

    @app.get("/api/instances/{instance_id}")
    def instance(instance_id: InstanceId, f: FunnelDep) -> dict[str, Any]:
        return f.get(instance_id).to_dict()

    @app.get("/api/instances/{instance_id}/history")
    def history(instance_id: InstanceId, f: FunnelDep) -> list[dict[str, Any]]:
        return [e.model_dump() for e in f.history(instance_id)]

    return app

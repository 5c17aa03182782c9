"""Path and query parameter types shared by the routers, and the one way an instance is shaped for clients."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import Path, Query, Response

from api.schemas import MAX_ID, NO_NUL, InstanceOut
from engine.instances import Funnel
from engine.queues import MAX_LIMIT
from engine.views import InstanceView

InstanceId = Annotated[int, Path(ge=1, le=MAX_ID, description="instance id")]
CustomerId = Annotated[int, Path(ge=1, le=MAX_ID, description="customer id")]
TaskIdPath = Annotated[str, Path(min_length=1, max_length=64, pattern=NO_NUL, description="task id")]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"page size (1..{MAX_LIMIT})")]
Offset = Annotated[int, Query(ge=0, le=2**31, description="items to skip")]
Filter = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)]


def instance_out(funnel: Funnel, view: InstanceView) -> InstanceOut:
    """An instance as clients see it: its columns plus the number of the definition version it runs on."""
    version = funnel.definitions.get(view.definition_version_id).version
    return InstanceOut.model_validate({**view.to_dict(), "definition_version": version})


def utc(moment: datetime | None) -> datetime | None:
    """A query time without an offset is read as UTC."""
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def instance_response(funnel: Funnel, view: InstanceView, status_code: int = 200) -> Response:
    """instance_out as the reply itself. Routes that return it declare `response_model=InstanceOut` (the OpenAPI
    document is unchanged). A model returned from a sync route is validated again by FastAPI, in one more
    thread-pool hop, then serialized again; the model built here was validated once already."""
    return Response(instance_out(funnel, view).model_dump_json(), status_code=status_code,
                    media_type="application/json")

"""One place that maps engine errors to RFC 9457 problem details; no traceback ever reaches a client."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.errors import (
    Conflict,
    DefinitionError,
    ExpressionError,
    FunnelError,
    InvalidInput,
    NotFound,
    TransitionRefused,
    WorkflowFailed,
)

log = logging.getLogger("funnel.api")

STATUS = {
    NotFound: 404,
    Conflict: 409,
    TransitionRefused: 422,
    InvalidInput: 422,
    DefinitionError: 422,
    ExpressionError: 422,
    WorkflowFailed: 422,
}
TITLES = {
    404: "Not found",
    409: "Conflict",
    422: "Request cannot be carried out",
    500: "Internal error",
}


def problem(status: int, detail: str, *, type_: str, **extra: object) -> JSONResponse:
    body = {"type": f"urn:funnel:problem:{type_}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def status_for(err: FunnelError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def install(app: FastAPI) -> None:
    """Register the handlers: engine errors, request validation, HTTP errors and the last resort."""

    @app.exception_handler(FunnelError)
    async def _funnel(_: Request, err: FunnelError) -> JSONResponse:
        extra = {k: v for k, v in err.to_dict().items() if k not in ("message",)}
        return problem(status_for(err), err.message, type_=err.code, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, err: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "message": e.get("msg", "invalid")}
            for e in err.errors()
        ]
        return problem(422, "the request is not valid: " + "; ".join(f"{e['field']}: {e['message']}"
                                                                      for e in errors),
                       type_="invalid_request", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, err: StarletteHTTPException) -> JSONResponse:
        return problem(err.status_code, str(err.detail), type_="http")

    @app.exception_handler(Exception)
    async def _last_resort(_: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=err)
        return problem(500, "an unexpected error occurred; it was logged", type_="internal")

"""One place that maps engine errors to RFC 9457 problem details; no traceback ever reaches a client."""

from __future__ import annotations

import logging
import re
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.schemas import Problem
from engine.auth import Unauthenticated
from engine.errors import (
    Conflict,
    DefinitionError,
    ExpressionError,
    Forbidden,
    FunnelError,
    InvalidInput,
    NotFound,
    TransitionRefused,
    WorkflowFailed,
)

log = logging.getLogger("funnel.api")
PROBLEM_JSON = "application/problem+json"

STATUS = {
    Unauthenticated: 401,
    Forbidden: 403,
    NotFound: 404,
    Conflict: 409,
    TransitionRefused: 422,
    InvalidInput: 422,
    DefinitionError: 422,
    ExpressionError: 422,
    WorkflowFailed: 422,
}
TITLES = {
    400: "Bad request",
    401: "Authentication required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request body too large",
    422: "Request cannot be carried out",
    500: "Internal error",
    503: "Service unavailable",
}
WHY = {
    400: "the body could not be read (send UTF-8 JSON, or the documented upload)",
    401: "no valid bearer token was sent",
    403: "your role does not allow this",
    404: "no such resource",
    409: "the resource changed meanwhile, or the call is out of order: reload and retry",
    413: "the request body is larger than the service accepts",
    503: "the database cannot answer right now (unreachable, restarting or busy): retry after Retry-After",
    422: "the request is not valid or a rule refused it: see detail",
}


def problem(status: int, detail: str, *, type_: str, headers: dict[str, str] | None = None,
            **extra: object) -> JSONResponse:
    body = {"type": f"urn:funnel:problem:{type_}", "title": TITLES.get(status, "Error"), "status": status,
            "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_for(err: FunnelError) -> int:
    for cls in type(err).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def responses(*codes: int, auth: bool = True) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem answers a route can give (each a Problem document); 401 unless auth=False."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in ((401,) if auth else ()) + codes:
        entry: dict[str, Any] = {"description": WHY.get(code, TITLES.get(code, "Error")),
                                 "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        if code == 401:
            entry["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Bearer"}}
        if code == 503:
            entry["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
        out[code] = entry
    return out


def finish_openapi(schema: dict[str, Any]) -> None:
    """Put the Problem model into the components (where `responses` points); every body may be too large (413),
    and every operation may find the database unavailable (503)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.setdefault("Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}"))
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            if not isinstance(operation, dict):
                continue
            answers = operation.setdefault("responses", {})
            for code in ((400, 413, 503) if "requestBody" in operation else (503,)):
                answers.setdefault(str(code), responses(code, auth=False)[code])


def install(app: FastAPI) -> None:
    """Register the handlers: engine errors, request validation, HTTP errors and the last resort."""

    @app.exception_handler(FunnelError)
    async def _funnel(_: Request, err: FunnelError) -> JSONResponse:
        status = status_for(err)
        extra = {k: v for k, v in err.to_dict().items() if k not in ("message",)}
        headers = None
        if isinstance(err, Unauthenticated):  # RFC 6750: say which scheme, and whether the token was bad
            headers = {"WWW-Authenticate": 'Bearer realm="funnel"' + ("" if err.missing else ', error="invalid_token"')}
        return problem(status, err.message, type_=err.code, headers=headers, **extra)

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
    async def _http(request: Request, err: StarletteHTTPException) -> JSONResponse:
        headers = dict(err.headers or {})
        detail = str(err.detail)
        if err.status_code == 400 and "parsing the body" in detail:
            detail = "the request body could not be read as JSON: send one UTF-8 JSON object, not nested too deeply"
        if err.status_code == 405:  # one route per method: Starlette's Allow names only the first one's
            allowed = _allowed_methods(request)
            headers["Allow"] = ", ".join(allowed)
            detail = f"{request.method} is not supported here; use {' or '.join(allowed)}"
        return problem(err.status_code, detail, type_="http", headers=headers)

    @app.exception_handler(sa.exc.DBAPIError)
    @app.exception_handler(sa.exc.TimeoutError)
    async def _database(request: Request, err: Exception) -> JSONResponse:
        detail = database_unavailable(err)
        if detail is None:  # a real fault (a constraint we did not foresee, bad SQL): the last resort's answer
            return await _last_resort(request, err)
        log.warning("database unavailable (%s): %s", type(err).__name__, str(err).splitlines()[0] if str(err) else "")
        return problem(503, detail, type_="unavailable", headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _last_resort(_: Request, err: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=err)
        return problem(500, "an unexpected error occurred; it was logged", type_="internal")


def database_unavailable(err: Exception) -> str | None:
    """What to tell the client when the database, not the request, is the problem; None for other errors.

    The pool checks a connection that sat idle before lending it (engine/db.py), but one that a restart killed
    moments after its last use fails on its first statement: that request gets this answer and the next one
    reconnects. A change that failed this way was rolled back, unless the connection died during the commit
    itself; sending expected_version makes the retry safe either way (a 409 then means the first one landed).
    """
    if isinstance(err, sa.exc.TimeoutError):
        return "every database connection is in use: retry in a moment"
    if isinstance(err, sa.exc.DBAPIError) and err.connection_invalidated:
        return ("the connection to the database was lost: retry (with expected_version a retried change "
                "cannot apply twice)")
    if isinstance(err, sa.exc.OperationalError):
        return "the database cannot answer right now (down, restarting or too busy): retry in a moment"
    return None


def _allowed_methods(request: Request) -> list[str]:
    """Every method the OpenAPI document lists for this path (the Allow header of a 405)."""
    methods: set[str] = set()
    for template, operations in request.app.openapi().get("paths", {}).items():
        pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", re.escape(template))
        if re.fullmatch(pattern, request.url.path):
            methods |= {m.upper() for m in operations}
    return sorted(methods) or ["GET"]

"""The dependency that resolves the bearer token of a request to the user (roles and teams) it belongs to."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from engine import auth
from engine.instances import Funnel
from engine.permissions import Principal

bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="A token from `funnel users add NAME --role ROLE` or `funnel users token NAME`.")


async def get_funnel(request: Request) -> Funnel:
    """The app's engine. `async` (no I/O here): FastAPI runs a plain `def` dependency in the thread pool, one
    hop per request spent on an attribute read."""
    funnel: Funnel = request.app.state.funnel
    return funnel


FunnelDep = Annotated[Funnel, Depends(get_funnel)]


def current_user(funnel: FunnelDep,
                 credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
    """401 (engine.auth.Unauthenticated) unless the token is valid and its user active."""
    return auth.verify(funnel.engine, credentials.credentials if credentials else None)


UserDep = Annotated[Principal, Depends(current_user)]

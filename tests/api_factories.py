"""Factories for API tests: a staff roster with real bearer tokens, and an authenticated client per person."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi.testclient import TestClient

from engine import auth, people
from engine.instances import Funnel
from tests.factories import FUNNEL_STAGE_DATA

# login -> (roles, teams they are members of); managers are set per team below
STAFF: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "root": (("admin",), ()),
    "olga": (("process_owner",), ()),
    "mia": (("manager",), ()),
    "sam": (("manager",), ()),
    "alice": (("rep",), ("sales_north",)),
    "bob": (("rep",), ("sales_north",)),
    "carol": (("rep",), ("sales_south",)),
    "dana": (("manager", "service_desk"), ()),
    "sue": (("service_desk",), ("service_desk",)),
    "tom": (("service_desk",), ("service_desk",)),
}
TEAMS = {"sales_north": "mia", "sales_south": "sam", "service_desk": "dana"}
OPPORTUNITY: dict[str, Any] = {**FUNNEL_STAGE_DATA[0]}


@dataclass
class Staff:
    """People with tokens; `as_(login)` is a client whose every request carries that person's token."""

    client: TestClient
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, login: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[login]}"}

    def as_(self, login: str) -> Caller:
        return Caller(self.client, self.headers(login))


@dataclass
class Caller:
    """An authenticated client for one person."""

    client: TestClient
    headers: dict[str, str]

    def get(self, url: str, **kw: Any) -> httpx.Response:
        return self.client.get(url, headers=self.headers, **kw)

    def post(self, url: str, json: Any = None, **kw: Any) -> httpx.Response:
        return self.client.post(url, json=json, headers={**self.headers, **kw.pop("headers", {})}, **kw)

    def patch(self, url: str, json: Any = None) -> httpx.Response:
        return self.client.patch(url, json=json, headers=self.headers)


def roster(funnel: Funnel) -> dict[str, str]:
    """Create STAFF and TEAMS and return a fresh token per login."""
    for login, (roles, _) in STAFF.items():
        people.create_user(funnel.engine, login, display_name=login.title(), email=f"{login}@example.com",
                           roles=roles)
    for team, manager in TEAMS.items():
        members = [login for login, (_, teams) in STAFF.items() if team in teams]
        people.create_team(funnel.engine, team, title=team.replace("_", " ").title(), manager=manager,
                           members=members)
    return {login: auth.issue(funnel.engine, login, actor="test", now=funnel.clock()).token for login in STAFF}


def start(caller: Caller, workflow: str = "sales_funnel", *, expect: int = 201, **body: Any) -> dict[str, Any]:
    """Start an instance through the API and return its body (asserting the status)."""
    response = caller.post("/api/instances", {"workflow": workflow, **body})
    assert response.status_code == expect, response.text
    return dict(response.json())


def advance(caller: Caller, instance_id: int, data: dict[str, Any], *, expect: int = 200,
            **body: Any) -> dict[str, Any]:
    response = caller.post(f"/api/instances/{instance_id}/advance", {"data": data, **body})
    assert response.status_code == expect, response.text
    return dict(response.json())


def problem_of(response: httpx.Response, status: int) -> dict[str, Any]:
    """Assert a problem document with this status and return it."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = dict(response.json())
    assert body["status"] == status and body["detail"] and body["type"].startswith("urn:funnel:problem:")
    assert "Traceback" not in response.text
    return body

"""Authentication and roles: 401 without a valid token (every /api route), 403 for a known user in the wrong
role; tokens are stored as hashes only and come from the `funnel users` admin commands."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from api.cli import app as cli
from engine import people
from engine.instances import Funnel
from engine.settings import get_settings
from tests.api_factories import OPPORTUNITY, Staff, advance, problem_of, start
from tests.factories import FUNNEL_STAGE_DATA, linear_workflow

runner = CliRunner()


def test_given_no_token_when_any_api_route_is_called_then_401_with_a_bearer_challenge(
        app: FastAPI, client: TestClient) -> None:
    for path, operations in app.openapi()["paths"].items():
        if not path.startswith("/api"):
            continue
        url = re.sub(r"\{[^}]+\}", "1", path)
        for method in operations:
            response = client.request(method.upper(), url, json={})
            body = problem_of(response, 401)
            assert response.headers["www-authenticate"] == 'Bearer realm="funnel"', (method, path)
            assert "bearer token" in body["detail"]


@pytest.mark.parametrize("header", [
    "Bearer nonsense", "Bearer fnl_0123456789abcdef_" + "A" * 43, "Basic YWxpY2U6c2VjcmV0", "Bearer ",
])
def test_given_a_bad_token_when_calling_then_401_and_nothing_is_revealed(client: TestClient, staff: Staff,
                                                                          header: str) -> None:
    response = client.get("/api/instances", headers={"Authorization": header})
    body = problem_of(response, 401)
    assert response.headers["www-authenticate"].startswith('Bearer realm="funnel"')
    assert "fnl_" not in body["detail"].replace("fnl_<key>_<secret>", "")


def test_given_a_token_of_a_deactivated_user_then_401_naming_why(funnel: Funnel, staff: Staff) -> None:
    people.deactivate_user(funnel.engine, "bob")
    response = staff.as_("bob").get("/api/tasks")
    assert "bob is inactive" in problem_of(response, 401)["detail"]
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


def test_given_issued_tokens_then_only_their_sha256_hashes_are_stored(funnel: Funnel, staff: Staff) -> None:
    with funnel.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT key, token_hash FROM api_token"))]
    dump = repr(stored)
    for login, token in staff.tokens.items():
        assert token not in dump, login
        assert (token.split("_")[1], hashlib.sha256(token.encode()).hexdigest()) in stored


@pytest.mark.parametrize(("login", "method", "path", "body", "why"), [
    ("alice", "post", "/api/workflows", None, "needs the role process_owner"),
    ("alice", "get", "/api/tasks?queue=team", None, "needs the role manager"),
    ("alice", "get", "/api/reports/funnel", None, "needs the role manager or process_owner"),
    ("alice", "get", "/api/sla?assignee=bob", None, "only see the SLA state of their own work"),
    ("olga", "post", "/api/instances", {"workflow": "sales_funnel", "data": {}}, "needs the role rep or manager"),
    ("sue", "post", "/api/instances", {"workflow": "sales_funnel", "data": {}}, "needs the role rep or manager"),
    ("alice", "post", "/api/instances", {"workflow": "service_request", "data": {}},
     "needs the role service_desk or manager"),
    ("mia", "get", "/api/reports/funnel?team=sales_south", None, "mia does not manage team 'sales_south'"),
    ("olga", "post", "/api/customers", {"name": "Acme", "tier": "B"}, "creating or changing a customer"),
])
def test_given_a_known_user_in_the_wrong_role_then_403_naming_the_role(
        staff: Staff, login: str, method: str, path: str, body: dict[str, object] | None, why: str) -> None:
    caller = staff.as_(login)
    if method == "get":
        response = caller.get(path)
    elif body is not None:
        response = caller.post(path, body)
    else:
        response = caller.post(path, content=linear_workflow(), headers={"content-type": "application/xml"})
    assert why in problem_of(response, 403)["detail"]


def test_given_someone_elses_instance_then_reps_get_403_and_managers_of_the_team_may(staff: Staff) -> None:
    # given an opportunity of alice (sales_north)
    mine = start(staff.as_("alice"), customer_tier="B", data=OPPORTUNITY)
    url = f"/api/instances/{mine['id']}"
    # when / then: carol (a rep of another team) may neither see nor advance it
    assert "may not see instance" in problem_of(staff.as_("carol").get(url), 403)["detail"]
    refused = staff.as_("carol").post(f"{url}/advance", {"data": FUNNEL_STAGE_DATA[1]})
    assert "only its assignee" in problem_of(refused, 403)["detail"]
    # (and the refusal comes before anything is said about the data she sent)
    assert problem_of(staff.as_("carol").post(f"{url}/advance", {"data": {"_bad": 1}}), 403)
    # sam manages another team; mia manages alice's; olga owns the processes (reads everything)
    assert staff.as_("sam").get(url).status_code == 403
    assert staff.as_("olga").get(url).status_code == 200
    assert staff.as_("mia").get(url).status_code == 200
    assert advance(staff.as_("mia"), mine["id"], {})["row_version"] == 2  # mia works her team's work
    assert problem_of(staff.as_("olga").post(f"{url}/advance", {"data": {}}), 403)


def test_given_the_operational_routes_then_they_need_no_token(client: TestClient) -> None:
    assert client.get("/health").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert client.get("/docs").status_code == 200


# ---------------------------------------------------------------- the admin commands


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[str]:
    monkeypatch.setenv("FUNNEL_DATABASE_URL", db_url)
    get_settings.cache_clear()
    yield db_url
    get_settings.cache_clear()


def test_given_the_users_commands_then_tokens_work_until_revoked(cli_db: str) -> None:
    from api.app import create_app
    from engine.bootstrap import open_funnel

    # given a manager created with a team, and a second token for her
    added = runner.invoke(cli, ["users", "add", "mia", "--role", "manager", "--team", "sales_north",
                                "--email", "mia@example.com"])
    assert added.exit_code == 0, added.output
    first = added.stdout.strip().splitlines()[-1]
    again = runner.invoke(cli, ["users", "token", "mia", "--label", "laptop"])
    second = again.stdout.strip().splitlines()[-1]
    assert again.exit_code == 0 and first.startswith("fnl_") and second.startswith("fnl_") and first != second
    funnel = open_funnel(get_settings())
    try:
        assert people.get_team(funnel.engine, "sales_north").manager == "mia"
        with TestClient(create_app(funnel)) as client:
            for token in (first, second):
                assert client.get("/api/tasks?queue=team", headers={"Authorization": f"Bearer {token}"}).status_code \
                    == 200
            # when the first token is revoked
            listed = runner.invoke(cli, ["users", "tokens", "mia"]).stdout
            key = first.split("_")[1]
            assert key in listed and "laptop" in listed
            assert runner.invoke(cli, ["users", "revoke", key]).exit_code == 0
            # then it is refused at once; the second still works
            refused = client.get("/api/tasks", headers={"Authorization": f"Bearer {first}"})
            assert "revoked" in problem_of(refused, 401)["detail"]
            assert client.get("/api/tasks", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    finally:
        funnel.engine.dispose()


@pytest.mark.parametrize(("args", "message"), [
    (["users", "token", "nobody"], "no user with login 'nobody'"),
    (["users", "add", "Bad Login", "--role", "rep"], "must be lower-case letters"),
    (["users", "add", "zed", "--role", "wizard"], "wizard"),
    (["users", "revoke", "0000"], "no token with key"),
])
def test_given_bad_users_commands_then_a_clear_error_and_exit_two(cli_db: str, args: list[str], message: str) -> None:
    result = runner.invoke(cli, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output

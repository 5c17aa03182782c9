"""The read-only HTTP surface: health, workflows, instances; errors are problem details, never 500s."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from engine.instances import Funnel
from tests.factories import FUNNEL_STAGE_DATA, start_opportunity


@pytest.fixture
def client(funnel: Funnel) -> Iterator[TestClient]:
    with TestClient(create_app(funnel), raise_server_exceptions=False) as c:
        yield c


def test_given_a_running_service_when_health_is_asked_then_database_is_reachable(client: TestClient) -> None:
    assert client.get("/health").json() == {"status": "ok", "database": "reachable"}


def test_given_the_shipped_workflows_when_listed_then_stages_and_criteria_are_shown(client: TestClient) -> None:
    listed = {w["workflow"]: w for w in client.get("/api/workflows").json()}
    assert {"sales_funnel", "service_request", "routing_slip"} <= listed.keys()
    funnel_def = listed["sales_funnel"]
    assert funnel_def["version"] == 1
    assert [s["name"] for s in funnel_def["stages"]][:2] == ["Identify opportunity", "Qualification"]
    assert funnel_def["policy"] == {"backward": "with-reason", "skip": "never", "waiting": "never", "close": "never"}


def test_given_an_instance_when_fetched_then_state_and_history_are_returned(
    client: TestClient, funnel: Funnel
) -> None:
    view = funnel.advance(start_opportunity(funnel).id, FUNNEL_STAGE_DATA[0], actor="rep1")
    body = client.get(f"/api/instances/{view.id}").json()
    assert (body["stage"], body["row_version"], body["open_tasks"][0]["name"]) == (
        "Qualification", 2, "Qualification"
    )
    assert "state" not in body
    history = client.get(f"/api/instances/{view.id}/history").json()
    assert [e["kind"] for e in history] == ["created", "advanced"]


@pytest.mark.parametrize("path", ["/api/instances/999", "/api/instances/abc", "/api/instances/0",
                                  "/api/instances/99999999999999999999", "/api/nothing"])
def test_given_bad_ids_when_fetched_then_a_problem_document_not_a_500(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (404, 422)
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == response.status_code and body["detail"]

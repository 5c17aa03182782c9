"""The service surface: health, Prometheus metrics, the OpenAPI document with examples, problem documents for
unknown routes and methods; never a 500."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.errors import database_unavailable
from engine.instances import Funnel
from tests.api_factories import OPPORTUNITY, Staff, problem_of, start
from tests.db_helpers import backend_pid, drop_backend, one_connection


def test_given_a_running_service_when_health_is_asked_then_database_and_ticker_are_reported(
        client: TestClient) -> None:
    body = client.get("/health").json()
    assert (body["database"], body["status"]) == ("reachable", "degraded")  # no ticker runs beside a test client
    assert body["ticker"]["alive"] is False and body["ticker"]["outbox"] == {"unsent": 0, "due": 0, "failed": 0}


def test_given_some_traffic_then_metrics_expose_gauges_counters_and_latency(client: TestClient, staff: Staff) -> None:
    start(staff.as_("alice"), customer_tier="B", data=OPPORTUNITY)
    staff.as_("alice").get("/api/instances/999")
    text = client.get("/metrics").text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain; version=0.0.4")
    for line in ('funnel_instances{workflow="sales_funnel",status="running"} 1',
                 'funnel_open_tasks{workflow="sales_funnel"} 1',
                 'funnel_outbox_messages{state="unsent"} 0',
                 "funnel_ticker_alive 0",
                 'funnel_http_requests_total{method="POST",route="/api/instances",status="201"} 1',
                 'funnel_http_requests_total{method="GET",route="/api/instances/{instance_id}",status="404"} 1',
                 'funnel_http_request_duration_seconds_bucket{method="POST",route="/api/instances",le="+Inf"} 1'):
        assert line in text, line
    assert "# TYPE funnel_http_request_duration_seconds histogram" in text


def test_given_the_openapi_document_then_every_operation_documents_auth_errors_and_examples(app: FastAPI) -> None:
    document: dict[str, Any] = app.openapi()
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = operation["responses"]
            if path.startswith("/api"):
                assert operation["security"] == [{"bearer": []}] and "401" in answers, (method, path)
            for code, answer in answers.items():
                if code.startswith(("4", "5")):
                    assert list(answer["content"]) == ["application/problem+json"], (method, path, code)
            if "requestBody" in operation:
                assert {"400", "413", "422"} <= answers.keys(), (method, path)
    schemas = document["components"]["schemas"]
    for name in ("StartIn", "AdvanceIn", "MoveIn", "WaitingIn", "CloseIn", "AssignIn", "CompleteIn", "CustomerIn",
                 "CustomerPatch", "InstanceOut", "Problem", "FunnelReportOut", "ValidationOut"):
        assert schemas[name].get("examples"), name


@pytest.mark.parametrize(("method", "path", "status"), [
    ("get", "/api/instances/999", 404), ("get", "/api/instances/abc", 422), ("get", "/api/instances/0", 422),
    ("get", "/api/instances/99999999999999999999", 422), ("get", "/api/nothing", 404),
    ("delete", "/api/instances/1", 405), ("put", "/api/customers", 405),
])
def test_given_bad_ids_routes_or_methods_then_a_problem_document_not_a_500(
        staff: Staff, method: str, path: str, status: int) -> None:
    response = staff.client.request(method.upper(), path, headers=staff.headers("root"))
    problem_of(response, status)
    if status == 405:
        assert response.headers["allow"] in ("GET", "GET, POST")


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_given_the_database_connection_lost_mid_use_then_503_with_retry_after_and_the_next_call_works(
        funnel: Funnel, staff: Staff, pg_admin: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # given an instance and one pooled connection that was used moments ago (so it is not checked again)
    alice = staff.as_("alice")
    created = start(alice, customer_tier="B", data=OPPORTUNITY)
    one_connection(funnel.engine, monkeypatch, ping_after_idle=3600.0)
    # when the server drops it (as a restart does)
    drop_backend(pg_admin, backend_pid(funnel.engine))
    # then the request that meets the dead connection gets a 503 that says to retry, not a 500
    response = alice.get(f"/api/instances/{created['id']}")
    body = problem_of(response, 503)
    assert response.headers["Retry-After"] == "1"
    assert body["type"] == "urn:funnel:problem:unavailable" and "connection to the database was lost" in body["detail"]
    # and the retry works on a fresh connection
    assert alice.get(f"/api/instances/{created['id']}").status_code == 200


@pytest.mark.parametrize(("error", "says"), [
    (sa.exc.OperationalError("UPDATE instance", {}, Exception("database is locked")), "too busy"),
    (sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), "every database connection is in use"),
    (sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key")), None),
])
def test_given_a_database_error_then_only_unavailability_is_a_503(error: Exception, says: str | None) -> None:
    # when the API maps it
    detail = database_unavailable(error)
    # then a busy, locked or unreachable database asks for a retry; a real fault stays an internal error
    assert (detail is None) if says is None else (says in (detail or ""))

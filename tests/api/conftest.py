"""API fixtures: the app on the real engine and database, and a staff roster with real bearer tokens."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.app import create_app
from engine.instances import Funnel
from tests.api_factories import Staff, roster


@pytest.fixture
def app(funnel: Funnel) -> FastAPI:
    return create_app(funnel)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture
def staff(funnel: Funnel, client: TestClient) -> Staff:
    """Admin root, process owner olga, managers mia (sales_north), sam (sales_south), dana (service desk),
    reps alice and bob (north) and carol (south), service desk sue and tom."""
    return Staff(client, roster(funnel))

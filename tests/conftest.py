"""Shared fixtures: a real database per test (SQLite file, and a fresh PostgreSQL schema), a movable clock."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.bootstrap import open_funnel
from engine.instances import Funnel
from engine.settings import Settings

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
WORKFLOWS = REPO / "workflows"
PG_URL = os.environ.get("FUNNEL_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


class FakeClock:
    """The only clock tests use: starts at a fixed instant and moves when told."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def _pg_schema_url(schema: str) -> str:
    return f"{PG_URL}?options=-csearch_path%3D{schema}"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[sa.Engine]:
    """An engine on the PostgreSQL test database; fails (never skips) when the server is down."""
    engine = sa.create_engine(PG_URL, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except sa.exc.OperationalError as err:
        pytest.fail(f"PostgreSQL at {PG_URL} is required (start it: .ci/run does); {err}", pytrace=False)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new empty database: a SQLite file, or a private schema in the PostgreSQL test database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'funnel.sqlite3'}"
        return
    with _pg_schema(request.getfixturevalue("pg_admin")) as url:
        yield url


@pytest.fixture
def twin_db_url(db_url: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A second brand-new database of `db_url`'s kind, for tests that compare two databases."""
    if db_url.startswith("sqlite"):
        yield f"sqlite:///{tmp_path / 'twin.sqlite3'}"
        return
    with _pg_schema(request.getfixturevalue("pg_admin")) as url:
        yield url


@pytest.fixture
def pg_url(pg_admin: sa.Engine) -> Iterator[str]:
    """A brand-new empty private schema in the PostgreSQL test database, for what only PostgreSQL has (fails,
    never skips, when the server is down)."""
    with _pg_schema(pg_admin) as url:
        yield url


@contextmanager
def _pg_schema(admin: sa.Engine) -> Iterator[str]:
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _pg_schema_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))


def make_settings(db_url: str, workflows_dir: Path = WORKFLOWS) -> Settings:
    return Settings(database_url=db_url, workflows_dir=workflows_dir)


@pytest.fixture
def funnel(db_url: str, clock: FakeClock) -> Iterator[Funnel]:
    """The real engine on the real database with the shipped workflows loaded."""
    f = open_funnel(make_settings(db_url), clock=clock)
    yield f
    f.engine.dispose()

"""Fixtures for the notification tests: a migrated database and a real local SMTP server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.engine import Engine

from engine.db import make_engine, migrate
from tests.notifications.smtp_server import smtp_down, smtp_server

__all__ = ["db", "pg_db", "smtp_down", "smtp_server"]


@pytest.fixture
def db(db_url: str) -> Iterator[Engine]:
    """An empty database (SQLite file or PostgreSQL schema) migrated to head."""
    yield from _migrated(db_url)


@pytest.fixture
def pg_db(pg_url: str) -> Iterator[Engine]:
    """An empty PostgreSQL schema migrated to head, for what only PostgreSQL does."""
    yield from _migrated(pg_url)


def _migrated(url: str) -> Iterator[Engine]:
    engine = make_engine(url)
    migrate(engine)
    yield engine
    engine.dispose()

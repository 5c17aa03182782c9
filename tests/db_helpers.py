"""Database helpers: the schema against the models, and taking a pooled connection away as a restart does."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from engine import db as engine_db
from engine.db import reader

HASHED_KEY = "uq_sla_clock_instance_key"  # PostgreSQL: unique over (instance_id, md5(key)::uuid), migration 0020


def model_diff(engine: sa.Engine) -> list[Any]:
    """What alembic finds between the migrated schema and the models, less the one documented difference:
    PostgreSQL's clock key is a unique expression index, which the models declare as the plain unique key."""
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    if engine.dialect.name != "postgresql":
        return diff
    hashed = [d for d in diff if d[0] in ("remove_index", "add_constraint") and d[1].name == HASHED_KEY]
    assert sorted(d[0] for d in hashed) == ["add_constraint", "remove_index"], diff
    return [d for d in diff if not any(d is h for h in hashed)]


def backend_pid(engine: sa.Engine) -> int:
    """The server process behind the pool's connection (dispose the pool first, so there is only one)."""
    with reader(engine).connect() as conn:
        return int(conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one())


def drop_backend(admin: sa.Engine, pid: int) -> None:
    """What a server restart does to a pooled connection: its backend goes away."""
    with admin.connect() as conn:
        assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
        for _ in range(200):
            if not conn.execute(sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}).scalar():
                return
            conn.execute(sa.text("SELECT pg_sleep(0.01)"))


def one_connection(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, *, ping_after_idle: float) -> None:
    """Leave the pool with a single connection (the next one opened), checked only after `ping_after_idle` s."""
    engine.dispose()
    monkeypatch.setattr(engine_db, "PING_AFTER_IDLE_SECONDS", ping_after_idle)

"""PostgreSQL helpers for tests that take a pooled connection away, as a server restart does."""

from __future__ import annotations

import sqlalchemy as sa

from engine.db import reader


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

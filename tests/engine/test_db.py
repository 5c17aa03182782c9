"""Database engines: SQLite runs in WAL mode with durable commits unless told otherwise; reads hold no
transaction on PostgreSQL; a pooled connection is checked only after it sat idle, and a dead one is replaced."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from psycopg.pq import TransactionStatus

from engine.bootstrap import open_funnel
from engine.db import among, make_engine, read_session
from engine.instances import Funnel
from engine.models import Instance
from engine.models.people import User
from engine.settings import Settings
from tests.db_helpers import backend_pid, drop_backend, one_connection
from tests.factories import start_opportunity

FULL, NORMAL = 2, 1  # PRAGMA synchronous answers with numbers


def pragmas(engine: sa.Engine) -> tuple[str, int, int]:
    with engine.connect() as conn:
        return (conn.exec_driver_sql("PRAGMA journal_mode").scalar_one(),
                conn.exec_driver_sql("PRAGMA synchronous").scalar_one(),
                conn.exec_driver_sql("PRAGMA foreign_keys").scalar_one())


def test_given_default_settings_then_every_sqlite_commit_is_durable(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # given no FUNNEL_SQLITE_DURABLE in the environment
    monkeypatch.delenv("FUNNEL_SQLITE_DURABLE", raising=False)
    # when the engine is opened as the service opens it
    funnel = open_funnel(Settings(database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}"))
    # then WAL, synchronous=FULL (a commit survives a power cut) and foreign keys on
    assert pragmas(funnel.engine) == ("wal", FULL, 1)
    funnel.engine.dispose()


def test_given_durability_traded_for_speed_then_commits_sync_only_at_checkpoints(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the operator's choice in the environment
    monkeypatch.setenv("FUNNEL_SQLITE_DURABLE", "false")
    # when
    funnel = open_funnel(Settings(database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}"))
    # then
    assert pragmas(funnel.engine) == ("wal", NORMAL, 1)
    funnel.engine.dispose()


def test_given_a_durability_setting_that_is_not_a_boolean_then_it_is_refused_with_its_name(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FUNNEL_SQLITE_DURABLE", "sometimes")
    with pytest.raises(ValueError, match="sqlite_durable"):
        Settings()


@pytest.mark.parametrize("ids", [[], [2], [1, 3, 99], list(range(1, 600))])
def test_given_ids_then_among_selects_what_an_in_list_selects(db_url: str, ids: list[int]) -> None:
    # given a table of five rows
    engine = make_engine(db_url)
    table = sa.Table("among_t", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("name", sa.String(20)))
    try:
        with engine.begin() as conn:
            table.create(conn)
            conn.execute(sa.insert(table), [{"id": i, "name": f"n{i}"} for i in range(1, 6)])
        # when both ask for the same ids
        with engine.connect() as conn:
            got = conn.execute(sa.select(table.c.id).where(among(table.c.id, ids, engine.dialect))).scalars().all()
            names = conn.execute(sa.select(table.c.id).where(
                among(table.c.name, [f"n{i}" for i in ids], engine.dialect))).scalars().all()
        # then the same rows come back (one bound array on PostgreSQL, an IN list on SQLite)
        assert sorted(got) == sorted(names) == [i for i in range(1, 6) if i in ids]
    finally:
        with engine.begin() as conn:
            table.drop(conn, checkfirst=True)
        engine.dispose()


def test_given_a_read_session_when_it_writes_then_it_is_refused_and_nothing_is_written(funnel: Funnel) -> None:
    # given an instance
    view = start_opportunity(funnel)
    with read_session(funnel.engine) as session:
        # when a read session is asked to update a row, or to flush a new one
        with pytest.raises(RuntimeError, match="reads only"):
            session.execute(sa.update(Instance).where(Instance.id == view.id).values(stage="Won"))
        session.add(User(login="ghost", display_name="Ghost", email="ghost@example.com"))
        with pytest.raises(RuntimeError, match="reads only"):
            session.flush()
    # then the database holds neither change
    with read_session(funnel.engine) as session:
        assert session.get(Instance, view.id).stage == view.stage  # type: ignore[union-attr]
        assert session.exec(sa.select(User).where(User.login == "ghost")).first() is None  # type: ignore[call-overload]


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_given_reads_on_postgresql_then_they_hold_no_transaction_and_keep_prepared_statements(
        funnel: Funnel) -> None:
    # given one pooled connection and an instance
    view = start_opportunity(funnel)
    funnel.engine.dispose()
    # when the instance is read often enough for psycopg to prepare the query (5 times), each read a session
    for _ in range(8):
        funnel.get(view.id)
    # then a read session leaves no transaction open behind its query (no BEGIN, no ROLLBACK) ...
    with read_session(funnel.engine) as session:
        conn = session.connection()
        prepared = conn.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements").scalar_one()
        assert conn.connection.dbapi_connection.info.transaction_status == TransactionStatus.IDLE  # type: ignore[union-attr]
    # ... so the prepared statements survived the sessions (a ROLLBACK makes psycopg deallocate them all)
    assert prepared >= 1


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_given_a_connection_idle_past_the_window_when_its_backend_died_then_the_next_call_gets_a_new_one(
        funnel: Funnel, pg_admin: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # given an instance and one pooled connection, checked before every use (window 0)
    view = start_opportunity(funnel)
    one_connection(funnel.engine, monkeypatch, ping_after_idle=0.0)
    old = backend_pid(funnel.engine)
    # when the server drops it
    drop_backend(pg_admin, old)
    # then the next call notices before using it and works on a fresh connection
    assert funnel.get(view.id).id == view.id
    assert backend_pid(funnel.engine) != old


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_given_a_connection_used_moments_ago_when_its_backend_died_then_one_call_fails_and_the_next_works(
        funnel: Funnel, pg_admin: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # given an instance and one pooled connection, never checked (inside the window)
    view = start_opportunity(funnel)
    one_connection(funnel.engine, monkeypatch, ping_after_idle=3600.0)
    drop_backend(pg_admin, backend_pid(funnel.engine))
    # when the next call uses it, it fails as a lost connection (the API answers 503 with Retry-After)
    with pytest.raises(sa.exc.OperationalError) as failed:
        funnel.get(view.id)
    assert failed.value.connection_invalidated
    # then the pool dropped it and the call after that works
    assert funnel.get(view.id).id == view.id

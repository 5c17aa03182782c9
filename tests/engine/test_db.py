"""Database engines: SQLite runs in WAL mode with durable commits unless told otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.bootstrap import open_funnel
from engine.db import among, make_engine
from engine.settings import Settings

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

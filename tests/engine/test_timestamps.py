"""Timestamps as stored: integers on SQLite (migration 0017 converts both ways), timestamptz on PostgreSQL."""

from __future__ import annotations

import importlib
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command

from engine.db import alembic_config, migrate
from engine.instances import Funnel
from tests.conftest import FakeClock
from tests.people_factories import away, opportunity, sales_roster
from tests.sla_factories import MONDAY_9AM, ticket

# a sample of the converted columns: history, SLA bookkeeping, a CHECK comparing two times (absence)
SAMPLE = {"instance": ("created_at", "updated_at"), "audit_event": ("at",), "sla_clock": ("started_at", "deadline_at"),
          "sla_clock_event": ("at",), "sla_due": ("due_at",), "absence": ("starts_at", "ends_at")}


def stored(funnel: Funnel) -> dict[tuple[str, str], list[tuple[Any, str]]]:
    """Each sampled column's raw values with their SQLite storage class (PostgreSQL: its type name)."""
    sqlite = funnel.engine.dialect.name == "sqlite"
    out = {}
    with funnel.engine.connect() as conn:
        for table, columns in SAMPLE.items():
            for c in columns:
                kind = f"typeof({c})" if sqlite else f"pg_typeof({c})::text"
                rows = conn.execute(sa.text(f"SELECT {c}, {kind} FROM {table} ORDER BY id")).all()
                out[table, c] = [(v, k) for v, k in rows]
    return out


def read(funnel: Funnel) -> dict[tuple[str, str], list[Any]]:
    """The same columns as the engine reads them (through the column type)."""
    from sqlmodel import SQLModel

    out = {}
    with funnel.engine.connect() as conn:
        for table, columns in SAMPLE.items():
            t = SQLModel.metadata.tables[table]
            for c in columns:
                out[table, c] = list(conn.execute(sa.select(t.c[c]).order_by(t.c.id)).scalars())
    return out


@pytest.fixture
def busy(funnel: Funnel, clock: FakeClock) -> Funnel:
    """An assigned opportunity, a service ticket with its SLA clocks and deadlines, and an absence."""
    clock.now = MONDAY_9AM
    sales_roster(funnel.engine, now=clock.now)
    away(funnel.engine, "erin", clock.now)
    opportunity(funnel)
    clock.advance(seconds=1.5, microseconds=7)
    ticket(funnel)
    return funnel


def test_given_an_engine_at_work_then_sqlite_stores_integers_and_every_time_reads_back_exactly(
        busy: Funnel, clock: FakeClock) -> None:
    # given / when
    raw, seen = stored(busy), read(busy)
    # then SQLite holds integers (PostgreSQL its timestamptz) and the engine reads the moments it wrote
    expected = "integer" if busy.engine.dialect.name == "sqlite" else "timestamp with time zone"
    assert {k for values in raw.values() for _, k in values} == {expected}
    assert all(values for values in raw.values())
    assert clock.now in seen["sla_clock", "started_at"]
    assert all(v.tzinfo is not None for values in seen.values() for v in values)


def test_given_busy_tables_when_0017_is_downgraded_and_upgraded_then_every_time_survives_exactly(
        busy: Funnel) -> None:
    # given
    before = read(busy)
    sqlite = busy.engine.dialect.name == "sqlite"
    # when the schema goes back to 0016 ...
    command.downgrade(alembic_config(busy.engine), "0016")
    # ... then SQLite holds SQLAlchemy's text again, which still reads as the same moments
    if sqlite:
        assert {k for values in stored(busy).values() for _, k in values} == {"text"}
    assert read(busy) == before
    # and forward again: integers, the same moments, history still append-only, and the engine carries on
    migrate(busy.engine)
    assert read(busy) == before
    if sqlite:
        assert {k for values in stored(busy).values() for _, k in values} == {"integer"}
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), busy.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_event SET actor = 'x'"))
    view = opportunity(busy)
    assert busy.history(view.id)[0].at == view.created_at


def test_given_the_models_then_0017_converts_every_aware_utc_column_they_have() -> None:
    # given every column the models declare with the aware-UTC type
    from sqlmodel import SQLModel

    from engine.models.types import UTCDateTime

    declared = {t.name: tuple(c.name for c in t.columns if isinstance(c.type, UTCDateTime))
                for t in SQLModel.metadata.tables.values()}
    # when / then the migration's list names exactly those (a column it missed would keep text on SQLite)
    assert {t: set(cs) for t, cs in declared.items() if cs} == {t: set(cs) for t, cs in revision_0017().items()}


def revision_0017() -> dict[str, tuple[str, ...]]:
    module = importlib.import_module("engine.migrations.versions.0017_sqlite_integer_timestamps")
    return module.COLUMNS

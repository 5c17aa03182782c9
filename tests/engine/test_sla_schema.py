"""The SLA tables as migrated: they match the models, the ledger is append-only, each level exists once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from sqlmodel import Session, col, select

from engine.db import alembic_config, migrate
from engine.instances import Funnel
from engine.models.sla import SlaClock, SlaClockEvent, SlaDue, key_of, task_of
from tests.conftest import FakeClock
from tests.db_helpers import model_diff
from tests.factories import FUNNEL_STAGE_DATA
from tests.people_factories import opportunity, sales_roster
from tests.sla_factories import MONDAY_9AM, fired, pending_due, tick_at, ticket

TABLES = ("sla_clock", "sla_clock_event", "sla_due")


def test_given_the_migrated_schema_then_the_sla_tables_match_the_models(funnel: Funnel) -> None:
    diff = model_diff(funnel.engine)
    assert [d for d in diff if any(f"'{t}'" in repr(d) for t in TABLES)] == []


@pytest.mark.parametrize("statement", ["UPDATE sla_clock_event SET reason = 'x'", "DELETE FROM sla_clock_event"])
def test_given_a_clock_ledger_then_the_database_refuses_to_change_or_delete_it(
    funnel: Funnel, clock: FakeClock, statement: str
) -> None:
    clock.now = MONDAY_9AM
    ticket(funnel)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), funnel.engine.begin() as conn:
        conn.execute(sa.text(statement))
    with Session(funnel.engine) as session:
        assert len(session.exec(select(SlaClockEvent)).all()) == 2


def test_given_a_fired_level_then_a_second_row_for_it_is_refused(funnel: Funnel, clock: FakeClock) -> None:
    clock.now = MONDAY_9AM
    ticket(funnel)
    with Session(funnel.engine) as session:
        first = session.exec(select(SlaDue).order_by(col(SlaDue.id))).first()
        assert first is not None
        session.add(SlaDue(clock_id=first.clock_id, cycle=first.cycle,
                           level=first.level, severity=first.severity, due_at=first.due_at))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()


# ---------------------------------------------------------------- 0018: the clock names the instance


def sla_rows(funnel: Funnel) -> dict[str, list[tuple[object, ...]]]:
    """Every ledger entry and escalation row with the instance of its clock, as plain tuples."""
    queries = {
        "sla_clock_event": "SELECT e.id, e.clock_id, c.instance_id, e.kind, e.cycle FROM sla_clock_event e "
                           "JOIN sla_clock c ON c.id = e.clock_id ORDER BY e.id",
        "sla_due": "SELECT d.id, d.clock_id, c.instance_id, d.level, d.fired_at IS NULL FROM sla_due d "
                   "JOIN sla_clock c ON c.id = d.clock_id ORDER BY d.id",
    }
    with funnel.engine.connect() as conn:
        return {table: [tuple(r) for r in conn.execute(sa.text(sql))] for table, sql in queries.items()}


def test_given_sla_rows_when_0018_is_downgraded_and_upgraded_then_they_survive_and_the_ledger_stays_append_only(
        funnel: Funnel, clock: FakeClock) -> None:
    # given two tickets whose clocks have ledgers and pending levels, one level already fired
    clock.now = MONDAY_9AM
    first, second = ticket(funnel), ticket(funnel)
    dues = sorted(d.due_at for d in pending_due(funnel.engine))
    assert tick_at(funnel, dues[0]).total > 0
    before = sla_rows(funnel)
    assert {r[2] for r in before["sla_due"]} == {first.id, second.id} and any(not r[4] for r in before["sla_due"])
    # when the schema goes back to 0017, each row names its clock's instance again, and the ledger refuses changes
    command.downgrade(alembic_config(funnel.engine), "0017")
    with funnel.engine.connect() as conn:
        for table in TABLES[1:]:
            named = conn.execute(sa.text(f"SELECT t.instance_id, c.instance_id FROM {table} t "
                                         "JOIN sla_clock c ON c.id = t.clock_id")).all()
            assert named and all(mine == clocks for mine, clocks in named)
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), funnel.engine.begin() as conn:
        conn.execute(sa.text("UPDATE sla_clock_event SET reason = 'x'"))
    # and forward again: the columns are gone, every row is as it was, and the ticker carries on
    migrate(funnel.engine)
    assert sla_rows(funnel) == before
    columns = {t: {c["name"] for c in sa.inspect(funnel.engine).get_columns(t)} for t in TABLES[1:]}
    assert all("instance_id" not in names for names in columns.values())
    with pytest.raises(sa.exc.DatabaseError, match="append-only"), funnel.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM sla_clock_event"))
    assert tick_at(funnel, dues[-1]).total > 0
    assert fired(funnel, first.id) and fired(funnel, second.id)


# ---------------------------------------------------------------- 0019: a per-task clock's key names its task


def clock_tasks(funnel: Funnel) -> dict[int, str | None]:
    with Session(funnel.engine) as session:
        return {c.id or 0: c.task_uuid for c in session.exec(select(SlaClock).order_by(col(SlaClock.id)))}


def test_given_per_task_and_per_instance_clocks_when_0019_is_downgraded_and_upgraded_then_each_names_its_task(
        funnel: Funnel, clock: FakeClock) -> None:
    # given an opportunity (a per-task stage clock) and a ticket (per-instance clocks)
    clock.now = MONDAY_9AM
    sales_roster(funnel.engine, now=clock.now)
    deal, desk = opportunity(funnel), ticket(funnel)
    before = clock_tasks(funnel)
    [task] = deal.open_tasks
    assert sorted(before.values(), key=str) == sorted([task.id, None, None], key=str)
    # when the schema goes back to 0018, the column holds exactly what the keys say
    command.downgrade(alembic_config(funnel.engine), "0018")
    with funnel.engine.connect() as conn:
        assert dict(conn.execute(sa.text("SELECT id, task_uuid FROM sla_clock")).all()) == before
    # and forward again: the column is gone, the clocks name the same tasks, and a reopened stage finds its clock
    migrate(funnel.engine)
    assert "task_uuid" not in {c["name"] for c in sa.inspect(funnel.engine).get_columns("sla_clock")}
    assert clock_tasks(funnel) == before
    moved = funnel.advance(deal.id, FUNNEL_STAGE_DATA[0], actor="alice")
    assert moved.stage != deal.stage and len(clock_tasks(funnel)) == len(before) + 1
    assert funnel.get(desk.id).status == "running"


def test_task_of_reads_the_task_from_a_per_task_key_only() -> None:
    assert task_of(key_of("stage_time", "0b18ffd4"), "stage_time") == "0b18ffd4"
    assert key_of("first_response", None) == "first_response"
    assert task_of("stage_time:0b18ffd4-9b73-4f05-9ec0-95e66f3c9f71", "stage_time") == (
        "0b18ffd4-9b73-4f05-9ec0-95e66f3c9f71")
    assert task_of("first_response", "first_response") is None
    assert task_of("a:b:0b18ffd4", "a:b") == "0b18ffd4"  # a name with a colon still splits after the name


# ---------------------------------------------------------------- 0020: PostgreSQL indexes the key's md5


def duplicate_clock(funnel: Funnel) -> None:
    """Insert a copy of the first clock (same instance, same key)."""
    with Session(funnel.engine) as session:
        first = session.exec(select(SlaClock).order_by(col(SlaClock.id))).first()
        assert first is not None
        session.add(SlaClock(**first.model_dump(exclude={"id"})))
        session.commit()


def unique_key_definition(funnel: Funnel) -> str:
    with funnel.engine.connect() as conn:
        if funnel.engine.dialect.name == "postgresql":
            return str(conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                                            "AND indexname = 'uq_sla_clock_instance_key'")).scalar_one())
        return str(conn.execute(sa.text("SELECT sql FROM sqlite_master WHERE name = 'sla_clock'")).scalar_one())


def test_given_a_clock_when_0020_is_downgraded_and_upgraded_then_a_second_clock_with_its_key_is_refused(
        funnel: Funnel, clock: FakeClock) -> None:
    # given an opportunity (a per-task clock, whose key carries the task's uuid) and a ticket
    clock.now = MONDAY_9AM
    sales_roster(funnel.engine, now=clock.now)
    opportunity(funnel)
    ticket(funnel)
    before = clock_tasks(funnel)
    # then the key is unique per instance: on PostgreSQL through its md5 as a 16-byte uuid
    assert ("md5((key)::text))::uuid" in unique_key_definition(funnel)) == (funnel.engine.dialect.name == "postgresql")
    with pytest.raises(sa.exc.IntegrityError):
        duplicate_clock(funnel)
    # when the schema goes back to 0019 and forward again, the clocks are kept and the guarantee with them
    command.downgrade(alembic_config(funnel.engine), "0019")
    assert "md5" not in unique_key_definition(funnel)
    with pytest.raises(sa.exc.IntegrityError):
        duplicate_clock(funnel)
    migrate(funnel.engine)
    assert clock_tasks(funnel) == before
    with pytest.raises(sa.exc.IntegrityError):
        duplicate_clock(funnel)

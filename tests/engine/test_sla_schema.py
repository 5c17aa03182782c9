"""The SLA tables as migrated: they match the models, the ledger is append-only, each level exists once."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import Session, SQLModel, col, select

from engine.instances import Funnel
from engine.models.sla import SlaClockEvent, SlaDue
from tests.conftest import FakeClock
from tests.sla_factories import MONDAY_9AM, ticket

TABLES = ("sla_clock", "sla_clock_event", "sla_due")


def test_given_the_migrated_schema_then_the_sla_tables_match_the_models(funnel: Funnel) -> None:
    with funnel.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
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
        session.add(SlaDue(clock_id=first.clock_id, instance_id=first.instance_id, cycle=first.cycle,
                           level=first.level, severity=first.severity, due_at=first.due_at))
        with pytest.raises(sa.exc.IntegrityError):
            session.commit()

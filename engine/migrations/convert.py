"""Helpers for migrations that change how rows are stored: a column converted in Python, append-only triggers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

BATCH = 1000


def convert_column(table: str, column: str, new_type: sa.types.TypeEngine[Any], change: Callable[[Any], Any]) -> None:
    """Add the new column, fill it batch by batch of rows, drop the old one and give the new one its name.

    Runs in the migration's transaction, so a failure leaves the table as it was. Indexes on other columns
    survive (SQLite's batch mode rebuilds the table with them); triggers do not on SQLite, so a caller with
    triggers on `table` drops them first and creates them again after.
    """
    scratch = f"{column}_new"
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.add_column(sa.Column(scratch, new_type, nullable=True))
    bind = op.get_bind()
    rows_of = sa.table(table, sa.column("id", sa.Integer), sa.column(column), sa.column(scratch, new_type))
    fill = (sa.update(rows_of).where(rows_of.c.id == sa.bindparam("b_id"))
            .values({scratch: sa.bindparam("b_new")}))
    last = 0
    while True:
        rows = bind.execute(sa.select(rows_of.c.id, rows_of.c[column]).where(rows_of.c.id > last)
                            .order_by(rows_of.c.id).limit(BATCH)).all()
        if not rows:
            break
        bind.execute(fill, [{"b_id": row[0], "b_new": change(row[1])} for row in rows])
        last = rows[-1][0]
    with op.batch_alter_table(table, schema=None) as batch_op:
        batch_op.drop_column(column)
        batch_op.alter_column(scratch, new_column_name=column, existing_type=new_type, nullable=False)


# the append-only tables and what their triggers say on SQLite (as revisions 0001, 0002 and 0006 wrote them)
APPEND_ONLY = {"audit_event": "audit history is append-only",
               "customer_history": "customer history is append-only",
               "sla_clock_event": "the SLA ledger is append-only"}


def append_only(table: str) -> None:
    """The database refuses UPDATE and DELETE on `table` (PostgreSQL: revision 0001's function, which stays)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION funnel_append_only()")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY[table]} ({verb} on {table})'); END")


def drop_append_only(table: str) -> None:
    """Lift `append_only` for a conversion; the caller puts it back in the same transaction."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")

"""Change a column's stored form row by row, for migrations whose conversion only Python can do (zlib)."""

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

"""Drop `sla_clock.task_uuid`: a per-task clock's key (`<name>:<task uuid>`) already names its task.

The column repeated 37 bytes of the key in every clock row, ~120 bytes per open instance at 3.3 clocks
(bench.size). `SlaClock.task_uuid` is now read from the key (engine.models.sla.task_of, and
`task_of_clock` in SQL where a query joins the clock to its task). No index used the column. SQLite
rebuilds the table (batch mode keeps its other indexes and the unique key). Downgrading adds the
column again, filled from the keys.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sla_clock", schema=None) as batch_op:
        batch_op.drop_column("task_uuid")


def downgrade() -> None:
    with op.batch_alter_table("sla_clock", schema=None) as batch_op:
        batch_op.add_column(sa.Column("task_uuid", sa.String(length=36), nullable=True))
    op.execute("UPDATE sla_clock SET task_uuid = CASE WHEN key = name THEN NULL "
               "ELSE substr(key, length(name) + 2) END")

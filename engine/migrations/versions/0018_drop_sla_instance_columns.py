"""Drop `instance_id` from the escalation rows (`sla_due`) and the SLA ledger (`sla_clock_event`).

Both rows belong to a clock, and the clock names its instance: nothing selects either table by instance
(0014 and 0016 dropped their instance indexes for that reason), and instances are never deleted, so no
foreign key needs the column either. The ticker now reads the instance from the clock it loads anyway.
With PostgreSQL's alignment each escalation row is 8 bytes shorter, and each ledger entry 8 bytes: ~110 bytes
per open instance at ten pending levels and 3.3 clocks (bench.size). SQLite rebuilds both tables (batch
mode keeps their other indexes); the ledger's append-only triggers are lifted for the rebuild and put back.
Downgrading adds the columns again, filled from the clocks.

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from engine.migrations.convert import append_only, drop_append_only

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

TABLES = ("sla_due", "sla_clock_event")
LEDGER = "sla_clock_event"


def upgrade() -> None:
    drop_append_only(LEDGER)
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("instance_id")
    append_only(LEDGER)


def downgrade() -> None:
    drop_append_only(LEDGER)
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("instance_id", sa.Integer(), nullable=True))
        op.execute(f"UPDATE {table} SET instance_id = "  # noqa: S608 - table names are this module's constants
                   f"(SELECT sla_clock.instance_id FROM sla_clock WHERE sla_clock.id = {table}.clock_id)")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column("instance_id", existing_type=sa.Integer(), nullable=False)
            batch_op.create_foreign_key(f"fk_{table}_instance_id", "instance", ["instance_id"], ["id"])
    append_only(LEDGER)

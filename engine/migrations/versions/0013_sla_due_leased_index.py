"""The pending escalation rows a worker holds, by lease end (partial index): next_due's earliest lease.

`next_due` asked "the earliest lease among the leased pending rows due before the first free one" as a
range over ix_sla_due_pending bounded by a subquery's value. PostgreSQL cannot see that value when it
plans, guesses a third of a million pending rows, and started two parallel workers for a scan that finds
a handful: ~20 ms on every poll at a million deadlines. The leased pending rows are few (claimed, not
yet fired); this index holds only them, so the earliest lease is its first entry (the bound is dropped:
a lease on a row due after the first free one ends after it anyway, so it never was the minimum).

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

LEASED = "fired_at IS NULL AND lease_until IS NOT NULL"


def upgrade() -> None:
    with op.batch_alter_table("sla_due", schema=None) as batch_op:
        batch_op.create_index("ix_sla_due_leased", ["lease_until"], unique=False,
                              postgresql_where=sa.text(LEASED), sqlite_where=sa.text(LEASED))


def downgrade() -> None:
    with op.batch_alter_table("sla_due", schema=None) as batch_op:
        batch_op.drop_index("ix_sla_due_leased")

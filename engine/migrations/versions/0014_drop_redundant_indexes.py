"""Drop four indexes no query needs: each is the leading column of another index, or never filtered on.

- ix_sla_due_clock_id: uq_sla_due_clock_cycle_level (clock_id, cycle, level) serves `clock_id = / IN`.
- ix_sla_clock_instance_id: uq_sla_clock_instance_key (instance_id, key) serves `instance_id =`.
- ix_sla_due_instance_id: nothing selects escalation rows by instance (instances are never deleted,
  so no foreign-key check needs it either).
- ix_instance_next_due_at: every timer query also filters running instances; 0010's partial
  ix_instance_timer_due (status, next_due_at) answers them.
Each index costs a write on every escalation row inserted, fired or dropped (or every timer change), and
together ~300 bytes per instance at 10 deadlines each (bench.size).

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

DROPPED = (("sla_due", "ix_sla_due_clock_id", "clock_id"), ("sla_due", "ix_sla_due_instance_id", "instance_id"),
           ("sla_clock", "ix_sla_clock_instance_id", "instance_id"),
           ("instance", "ix_instance_next_due_at", "next_due_at"))


def upgrade() -> None:
    for table, index, _ in DROPPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(index)


def downgrade() -> None:
    for table, index, column in DROPPED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(index, [column], unique=False)

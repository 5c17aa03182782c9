"""Drop two SLA indexes no query uses; each costs a write per clock change or ledger entry, and bytes.

- ix_sla_clock_status: clocks are only ever selected by `status <> 'stopped'` (open clocks), which
  no B-tree range answers; lists go by instance or by deadline (ix_sla_clock_deadline_at).
- ix_sla_clock_event_instance_id: the ledger is read by clock (ix_sla_clock_event_clock_id), and
  instances are never deleted, so no foreign-key check needs it either.
Together ~100 bytes per instance at 3.3 clocks each (bench.size). Plain DROP INDEX, no table rebuild:
the ledger's append-only triggers stay as they are.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None

DROPPED = (("sla_clock", "ix_sla_clock_status", "status"),
           ("sla_clock_event", "ix_sla_clock_event_instance_id", "instance_id"))


def upgrade() -> None:
    for table, index, _ in DROPPED:
        op.drop_index(index, table_name=table)


def downgrade() -> None:
    for table, index, column in DROPPED:
        op.create_index(index, table, [column], unique=False)

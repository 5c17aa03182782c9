"""SLA clocks: sla_clock, its append-only ledger sla_clock_event, and sla_due (pending escalation levels).

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "sla_clock",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("task_uuid", sa.String(length=36), nullable=True),
        sa.Column("stage", sa.String(length=200), nullable=True),
        sa.Column("calendar", sa.String(length=100), nullable=False),
        sa.Column("warning_ratio", sa.Float(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("target_seconds", sa.Float(), nullable=True),
        sa.Column("started_at", TS, nullable=False),
        sa.Column("stopped_at", TS, nullable=True),
        sa.Column("deadline_at", TS, nullable=True),
        sa.Column("warning_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.ForeignKeyConstraint(["instance_id"], ["instance.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("instance_id", "key", name="uq_sla_clock_instance_key"),
    )
    with op.batch_alter_table("sla_clock", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sla_clock_instance_id"), ["instance_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sla_clock_status"), ["status"], unique=False)
        batch_op.create_index(batch_op.f("ix_sla_clock_deadline_at"), ["deadline_at"], unique=False)

    op.create_table(
        "sla_clock_event",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clock_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("target_seconds", sa.Float(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("detail", JSON, nullable=False),
        sa.ForeignKeyConstraint(["clock_id"], ["sla_clock.id"]),
        sa.ForeignKeyConstraint(["instance_id"], ["instance.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sla_clock_event", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sla_clock_event_clock_id"), ["clock_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sla_clock_event_instance_id"), ["instance_id"], unique=False)
    _append_only("sla_clock_event")

    op.create_table(
        "sla_due",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("clock_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("cycle", sa.Integer(), nullable=False),
        sa.Column("level", sa.String(length=40), nullable=False),
        sa.Column("severity", sa.Integer(), nullable=False),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("fired_at", TS, nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("lease_until", TS, nullable=True),
        sa.ForeignKeyConstraint(["clock_id"], ["sla_clock.id"]),
        sa.ForeignKeyConstraint(["instance_id"], ["instance.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("clock_id", "cycle", "level", name="uq_sla_due_clock_cycle_level"),
    )
    with op.batch_alter_table("sla_due", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sla_due_clock_id"), ["clock_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_sla_due_instance_id"), ["instance_id"], unique=False)
        # the ticker's scan: pending rows by due time (fired rows are history and stay out of the index)
        batch_op.create_index("ix_sla_due_pending", ["due_at"], unique=False,
                              postgresql_where=sa.text("fired_at IS NULL"), sqlite_where=sa.text("fired_at IS NULL"))


def downgrade() -> None:
    with op.batch_alter_table("sla_due", schema=None) as batch_op:
        batch_op.drop_index("ix_sla_due_pending")
        batch_op.drop_index(batch_op.f("ix_sla_due_instance_id"))
        batch_op.drop_index(batch_op.f("ix_sla_due_clock_id"))
    op.drop_table("sla_due")
    _drop_append_only("sla_clock_event")
    with op.batch_alter_table("sla_clock_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_clock_event_instance_id"))
        batch_op.drop_index(batch_op.f("ix_sla_clock_event_clock_id"))
    op.drop_table("sla_clock_event")
    with op.batch_alter_table("sla_clock", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_sla_clock_deadline_at"))
        batch_op.drop_index(batch_op.f("ix_sla_clock_status"))
        batch_op.drop_index(batch_op.f("ix_sla_clock_instance_id"))
    op.drop_table("sla_clock")


def _append_only(table: str) -> None:
    """The ledger is append-only: the database refuses UPDATE and DELETE (function from revision 0001)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION funnel_append_only()")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, 'the SLA ledger is append-only ({verb} on {table})'); END")


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")

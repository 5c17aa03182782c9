"""Service requests: instance.waiting_since (waiting on the customer) and the ticket_metrics table.

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("waiting_since", sa.DateTime(timezone=True), nullable=True))

    op.create_table(
        "ticket_metrics",
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=40), nullable=True),
        sa.Column("priority", sa.String(length=20), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_response_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_response_by", sa.String(length=200), nullable=True),
        sa.Column("first_response_seconds", sa.Integer(), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.Column("reopen_count", sa.Integer(), nullable=False),
        sa.Column("waiting_seconds", sa.Integer(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=40), nullable=True),
        sa.Column("handling_seconds", sa.Integer(), nullable=True),
        sa.Column("satisfaction", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["instance_id"], ["instance.id"]),
        sa.PrimaryKeyConstraint("instance_id"),
    )
    with op.batch_alter_table("ticket_metrics", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_metrics_resolved_by"), ["resolved_by"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ticket_metrics", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_metrics_resolved_by"))
    op.drop_table("ticket_metrics")
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_column("waiting_since")

"""Customers (tier, group hierarchy, region), their contacts, the append-only customer history, instance links.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('tier', sa.String(length=1), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=True),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('row_version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("tier IN ('A', 'B', 'C', 'D')", name='ck_customer_tier'),
    sa.CheckConstraint('parent_id IS NULL OR parent_id <> id', name='ck_customer_not_own_parent'),
    sa.ForeignKeyConstraint(['parent_id'], ['customer.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_name'), ['name'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_parent_id'), ['parent_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_region'), ['region'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_tier'), ['tier'], unique=False)

    op.create_table('customer_contact',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('phone', sa.String(length=40), nullable=True),
    sa.Column('time_zone', sa.String(length=64), nullable=False),
    sa.Column('role', sa.String(length=100), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer_contact', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_contact_customer_id'), ['customer_id'], unique=False)

    op.create_table('customer_history',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('changes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['customer_id'], ['customer.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer_history', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_history_customer_id'), ['customer_id'], unique=False)

    op.create_table('instance_link',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('from_instance_id', sa.Integer(), nullable=False),
    sa.Column('to_instance_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('copied', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['from_instance_id'], ['instance.id'], ),
    sa.ForeignKeyConstraint(['to_instance_id'], ['instance.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('from_instance_id', 'kind', name='uq_instance_link_from_kind')
    )
    with op.batch_alter_table('instance_link', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_link_from_instance_id'), ['from_instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_link_to_instance_id'), ['to_instance_id'], unique=False)

    _append_only('customer_history')


def downgrade() -> None:
    _drop_append_only('customer_history')
    with op.batch_alter_table('instance_link', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_link_to_instance_id'))
        batch_op.drop_index(batch_op.f('ix_instance_link_from_instance_id'))

    op.drop_table('instance_link')
    with op.batch_alter_table('customer_history', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_history_customer_id'))

    op.drop_table('customer_history')
    with op.batch_alter_table('customer_contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_contact_customer_id'))

    op.drop_table('customer_contact')
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_tier'))
        batch_op.drop_index(batch_op.f('ix_customer_region'))
        batch_op.drop_index(batch_op.f('ix_customer_parent_id'))
        batch_op.drop_index(batch_op.f('ix_customer_name'))

    op.drop_table('customer')


def _append_only(table: str) -> None:
    """The database itself refuses UPDATE and DELETE (PostgreSQL reuses 0001's funnel_append_only())."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION funnel_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'customer history is append-only ({verb} on {table})'); END"
        )


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")

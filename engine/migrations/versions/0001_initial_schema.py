"""Initial schema: definition versions, instances, human tasks and the append-only audit log.

Revision ID: 0001
Revises: (none)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('definition_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workflow', sa.String(length=200), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('content_hash', sa.String(length=64), nullable=False),
    sa.Column('source_name', sa.String(length=500), nullable=False),
    sa.Column('bpmn', sa.Text(), nullable=False),
    sa.Column('dmn', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('spec', sa.JSON(), nullable=False),
    sa.Column('meta', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('workflow', 'version', name='uq_definition_version')
    )
    with op.batch_alter_table('definition_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_definition_version_content_hash'), ['content_hash'], unique=False)
        batch_op.create_index(batch_op.f('ix_definition_version_workflow'), ['workflow'], unique=False)

    op.create_table('instance',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('workflow', sa.String(length=200), nullable=False),
    sa.Column('definition_version_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=200), nullable=True),
    sa.Column('stage_order', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=40), nullable=False),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('customer_tier', sa.String(length=1), nullable=True),
    sa.Column('amount', sa.Float(), nullable=True),
    sa.Column('probability', sa.Float(), nullable=True),
    sa.Column('next_due_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('data', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('row_version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['definition_version_id'], ['definition_version.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_assignee'), ['assignee'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_definition_version_id'), ['definition_version_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_next_due_at'), ['next_due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_stage'), ['stage'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_instance_workflow'), ['workflow'], unique=False)

    op.create_table('audit_event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('actor', sa.String(length=200), nullable=False),
    sa.Column('kind', sa.String(length=40), nullable=False),
    sa.Column('from_stage', sa.String(length=200), nullable=True),
    sa.Column('to_stage', sa.String(length=200), nullable=True),
    sa.Column('changes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('row_version', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_event_instance_id'), ['instance_id'], unique=False)

    op.create_table('human_task',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('instance_id', sa.Integer(), nullable=False),
    sa.Column('task_uuid', sa.String(length=36), nullable=False),
    sa.Column('task_spec', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=300), nullable=False),
    sa.Column('stage', sa.String(length=200), nullable=True),
    sa.Column('lane', sa.String(length=200), nullable=True),
    sa.Column('role', sa.String(length=40), nullable=True),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('assignee', sa.String(length=200), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('completed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('completed_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['instance.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_human_task_assignee'), ['assignee'], unique=False)
        batch_op.create_index(batch_op.f('ix_human_task_instance_id'), ['instance_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_human_task_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_human_task_task_uuid'), ['task_uuid'], unique=False)


    _append_only('audit_event')


def downgrade() -> None:
    _drop_append_only('audit_event')
    with op.batch_alter_table('human_task', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_human_task_task_uuid'))
        batch_op.drop_index(batch_op.f('ix_human_task_status'))
        batch_op.drop_index(batch_op.f('ix_human_task_instance_id'))
        batch_op.drop_index(batch_op.f('ix_human_task_assignee'))

    op.drop_table('human_task')
    with op.batch_alter_table('audit_event', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_event_instance_id'))

    op.drop_table('audit_event')
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_workflow'))
        batch_op.drop_index(batch_op.f('ix_instance_status'))
        batch_op.drop_index(batch_op.f('ix_instance_stage'))
        batch_op.drop_index(batch_op.f('ix_instance_next_due_at'))
        batch_op.drop_index(batch_op.f('ix_instance_definition_version_id'))
        batch_op.drop_index(batch_op.f('ix_instance_customer_id'))
        batch_op.drop_index(batch_op.f('ix_instance_assignee'))

    op.drop_table('instance')
    with op.batch_alter_table('definition_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_definition_version_workflow'))
        batch_op.drop_index(batch_op.f('ix_definition_version_content_hash'))

    op.drop_table('definition_version')


def _append_only(table: str) -> None:
    """History is append-only: the database itself refuses UPDATE and DELETE on it."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION funnel_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION 'audit history is append-only (% on %)', TG_OP, TG_TABLE_NAME; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
            "FOR EACH ROW EXECUTE FUNCTION funnel_append_only()"
        )
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, 'audit history is append-only ({verb} on {table})'); END"
        )


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        op.execute("DROP FUNCTION IF EXISTS funnel_append_only()")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")

"""The outbox stores a template and its context; the sender renders it (literal parts stay possible).

Rendering three Jinja templates per e-mail was over half of the SLA ticker's time per fired level, spent
inside the transaction that fires it. A row now holds `template` + `context` (JSON) and the sender renders
it at delivery; `subject` / `text` become optional (rows written before this revision keep their rendered
parts and are sent as they are). The check keeps every row sendable: a template, or a subject and a text.

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
CONTENT = "template IS NOT NULL OR (subject IS NOT NULL AND text IS NOT NULL)"


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("template", sa.String(length=60), nullable=True))
        batch_op.add_column(sa.Column("context", JSON, nullable=True))
        batch_op.alter_column("subject", existing_type=sa.String(length=500), nullable=True)
        batch_op.alter_column("text", existing_type=sa.Text(), nullable=True)
        batch_op.create_check_constraint("ck_outbox_content", sa.text(CONTENT))


def downgrade() -> None:
    """Render every templated row into its literal parts first, so no message is lost by going back."""
    from notifications.outbox import content  # the templates as shipped with this revision

    bind = op.get_bind()
    outbox = sa.table("outbox", sa.column("id", sa.Integer), sa.column("template", sa.String),
                      sa.column("context", JSON), sa.column("subject", sa.String), sa.column("text", sa.Text),
                      sa.column("html", sa.Text))
    rows = bind.execute(sa.select(outbox).where(outbox.c.template.isnot(None))).all()
    for row in rows:
        parts = content(row)
        bind.execute(sa.update(outbox).where(outbox.c.id == row.id)
                     .values(subject=parts.subject, text=parts.text, html=parts.html))
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_constraint("ck_outbox_content", type_="check")
        batch_op.alter_column("text", existing_type=sa.Text(), nullable=False)
        batch_op.alter_column("subject", existing_type=sa.String(length=500), nullable=False)
        batch_op.drop_column("context")
        batch_op.drop_column("template")

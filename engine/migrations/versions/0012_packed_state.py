"""A workflow's state is stored deflated: `instance.state` becomes bytes (zlib-compressed JSON).

The state (~3.7 KB of JSON per instance) was most of an instance row on SQLite, which stores text as
it is; deflated it is ~1 KB (engine.models.types.PackedJSON). Existing rows are converted in batches
of 1,000, in this migration's transaction; downgrading inflates them back into JSON text.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from alembic import op

from engine.models.types import pack, unpack

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BATCH = 1000


def upgrade() -> None:
    _convert(sa.LargeBinary(), lambda state: pack(json.loads(state) if isinstance(state, (str, bytes)) else state))


def downgrade() -> None:
    _convert(sa.JSON(), lambda stored: unpack(bytes(stored)))


def _convert(new_type: sa.types.TypeEngine[Any], change: Callable[[Any], Any]) -> None:
    """Add the new column, fill it row batch by row batch, drop the old one and take its name."""
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("state_new", new_type, nullable=True))
    bind = op.get_bind()
    table = sa.table("instance", sa.column("id", sa.Integer), sa.column("state"), sa.column("state_new", new_type))
    last = 0
    while True:
        rows = bind.execute(sa.select(table.c.id, table.c.state).where(table.c.id > last)
                            .order_by(table.c.id).limit(BATCH)).all()
        if not rows:
            break
        bind.execute(sa.update(table).where(table.c.id == sa.bindparam("b_id")).values(state_new=sa.bindparam("b_new")),
                     [{"b_id": row.id, "b_new": change(row.state)} for row in rows])
        last = rows[-1].id
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_column("state")
        batch_op.alter_column("state_new", new_column_name="state", existing_type=new_type, nullable=False)

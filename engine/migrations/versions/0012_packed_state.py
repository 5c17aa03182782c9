"""A workflow's state is stored deflated: `instance.state` becomes bytes (zlib-compressed JSON).

The state (~3.7 KB of JSON per instance) was most of an instance row on SQLite, which stores text as
it is; deflated it is ~1 KB (engine.models.types.PackedJSON). Existing rows are converted in batches
of 1,000 (engine.migrations.convert), in this migration's transaction; downgrading inflates them back into JSON text.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from engine.migrations.convert import convert_column
from engine.models.types import pack, unpack

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    convert_column("instance", "state", sa.LargeBinary(),
                   lambda state: pack(json.loads(state) if isinstance(state, (str, bytes)) else state))


def downgrade() -> None:
    convert_column("instance", "state", sa.JSON(), lambda stored: unpack(bytes(stored)))

"""Audit changes and SLA ledger details are stored packed, like the workflow state (0012).

`audit_event.changes` (an assignment's explanation is ~1.1 KB of JSON) and `sla_clock_event.detail`
(the DMN row that set a target, ~160 B) become bytes: compact JSON deflated from the packing dictionary
(engine.models.packing), ~75 B and ~20 B on average. Nothing queries inside either; the engine reads
them whole. Existing rows are converted in batches (engine.migrations.convert) in this migration's
transaction. Both tables are append-only: their triggers are dropped for the conversion and created
again (SQLite's table rebuild would drop them anyway). Downgrading turns the bytes back into JSON.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from engine.migrations.convert import append_only, convert_column, drop_append_only
from engine.models.types import pack, unpack

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
COLUMNS = (("audit_event", "changes"), ("sla_clock_event", "detail"))


def upgrade() -> None:
    for table, column in COLUMNS:
        drop_append_only(table)
        convert_column(table, column, sa.LargeBinary(), _packed)
        append_only(table)


def downgrade() -> None:
    for table, column in COLUMNS:
        drop_append_only(table)
        convert_column(table, column, JSON, lambda stored: unpack(bytes(stored)))
        append_only(table)


def _packed(value: Any) -> bytes:
    return pack(json.loads(value) if isinstance(value, (str, bytes)) else value)

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
from alembic import op
from sqlalchemy.dialects import postgresql

from engine.migrations.convert import convert_column
from engine.models.types import pack, unpack

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
# table, column, what its append-only trigger says on SQLite (as revisions 0001 and 0006 wrote it)
COLUMNS = (("audit_event", "changes", "audit history is append-only"),
           ("sla_clock_event", "detail", "the SLA ledger is append-only"))


def upgrade() -> None:
    for table, column, message in COLUMNS:
        _drop_append_only(table)
        convert_column(table, column, sa.LargeBinary(), _packed)
        _append_only(table, message)


def downgrade() -> None:
    for table, column, message in COLUMNS:
        _drop_append_only(table)
        convert_column(table, column, JSON, lambda stored: unpack(bytes(stored)))
        _append_only(table, message)


def _packed(value: Any) -> bytes:
    return pack(json.loads(value) if isinstance(value, (str, bytes)) else value)


def _append_only(table: str, message: str) -> None:
    """The database refuses UPDATE and DELETE (PostgreSQL: revision 0001's function, which stays)."""
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                   "FOR EACH ROW EXECUTE FUNCTION funnel_append_only()")
        return
    for verb in ("UPDATE", "DELETE"):
        op.execute(f"CREATE TRIGGER {table}_no_{verb.lower()} BEFORE {verb} ON {table} "
                   f"BEGIN SELECT RAISE(ABORT, '{message} ({verb} on {table})'); END")


def _drop_append_only(table: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}")
        return
    for verb in ("update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb}")

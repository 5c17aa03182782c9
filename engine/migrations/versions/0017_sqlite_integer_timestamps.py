"""SQLite stores every timestamp as microseconds since the epoch (an integer), not as text.

SQLAlchemy writes a SQLite DATETIME as the text '2026-11-23 15:18:34.071173': 26 bytes per value and per
index entry, ~45 of them per open instance with its SLA clocks and deadlines. The column type
(notifications.models.UTCDateTime) now writes integers; this converts the rows already there, in SQL,
table by table. The columns stay declared DATETIME (SQLite's NUMERIC affinity keeps integers as they
are), so no table is rebuilt; the append-only tables' triggers are lifted for the update and put back.
PostgreSQL keeps its timestamptz: nothing to do there. Downgrading writes the text back.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

from alembic import op

from engine.migrations.convert import APPEND_ONLY, append_only, drop_append_only

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None

# every aware-UTC column at this revision
COLUMNS = {
    "absence": ("starts_at", "ends_at"),
    "api_token": ("created_at", "revoked_at"),
    "app_user": ("created_at", "updated_at"),
    "assignment_alert": ("created_at", "delivered_at"),
    "audit_event": ("at",),
    "customer": ("created_at", "updated_at"),
    "customer_contact": ("created_at",),
    "customer_history": ("at",),
    "definition_version": ("created_at",),
    "human_task": ("created_at", "completed_at"),
    "instance": ("next_due_at", "waiting_since", "created_at", "updated_at"),
    "instance_link": ("created_at",),
    "outbox": ("created_at", "next_attempt_at", "sent_at", "failed_at", "lease_until"),
    "rotation_pointer": ("updated_at",),
    "scheduler_heartbeat": ("started_at", "beat_at", "stopped_at"),
    "sla_clock": ("started_at", "stopped_at", "deadline_at", "warning_at", "updated_at"),
    "sla_clock_event": ("at",),
    "sla_due": ("due_at", "fired_at", "lease_until"),
    "team": ("created_at",),
    "ticket_metrics": ("created_at", "first_response_at", "closed_at", "updated_at"),
}
# text 'YYYY-MM-DD HH:MM:SS[.ffffff]' (SQLAlchemy's format, always UTC here) -> microseconds since the epoch
TO_MICROS = ("CAST(strftime('%s', substr({c}, 1, 19)) AS INTEGER) * 1000000 + CASE WHEN substr({c}, 20, 1) = '.' "
             "THEN CAST(substr(substr({c}, 21) || '000000', 1, 6) AS INTEGER) ELSE 0 END")
TO_TEXT = "strftime('%Y-%m-%d %H:%M:%S', {c} / 1000000, 'unixepoch') || printf('.%06d', {c} % 1000000)"


def upgrade() -> None:
    _rewrite("text", TO_MICROS)


def downgrade() -> None:
    _rewrite("integer", TO_TEXT)


def _rewrite(stored_as: str, expression: str) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table, columns in COLUMNS.items():
        if table in APPEND_ONLY:
            drop_append_only(table)
        # one statement per table: CHECKs that compare two of its times (absence) see both converted
        changes = ", ".join(f"{c} = CASE WHEN typeof({c}) = '{stored_as}' THEN {expression.format(c=c)} ELSE {c} END"
                            for c in columns)
        op.execute(f"UPDATE {table} SET {changes}")  # noqa: S608 (names from the list above)
        if table in APPEND_ONLY:
            append_only(table)

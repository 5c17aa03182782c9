"""`people_stamp`: one row that every write to the people tables (app_user, team, team_member) re-stamps.

Every escalation tick resolves recipients (assignee, manager, role:...) from the people tables: four or
five queries per firing transaction, 1.8 ms of a 9.8 ms tick of 20 levels on SQLite and 4 of 17.5 ms on
PostgreSQL, to read tables that change a few times a day. engine.directory keeps them in memory, and
checks this stamp (one indexed read) before each use.

The stamp is written by triggers, not by engine code, so every writer is covered: the API, the CLI,
the demo seeding, a migration, an administrator's SQL. A new stamp is never an earlier one come back: a
sequence on PostgreSQL (nextval is not rolled back), `random()` (64 bits) on SQLite. So a copy of the
tables taken inside a transaction that later rolled back can never be taken for a committed state.
PostgreSQL re-stamps once per statement (a bulk insert of users writes the row once), SQLite per row.

Revision ID: 0022
Revises: 0021
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None

TABLES = ("app_user", "team", "team_member")
SQLITE_EVENTS = ("INSERT", "UPDATE", "DELETE")


def upgrade() -> None:
    op.create_table("people_stamp", sa.Column("id", sa.Integer(), primary_key=True),
                    sa.Column("stamp", sa.BigInteger(), nullable=False))
    op.execute("INSERT INTO people_stamp (id, stamp) VALUES (1, 0)")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SEQUENCE people_stamp_seq")
        op.execute("""
            CREATE FUNCTION people_restamp() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                UPDATE people_stamp SET stamp = nextval('people_stamp_seq') WHERE id = 1;
                RETURN NULL;
            END $$""")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_restamp AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table} "
                       "FOR EACH STATEMENT EXECUTE FUNCTION people_restamp()")
        return
    for table in TABLES:
        for event in SQLITE_EVENTS:
            op.execute(f"CREATE TRIGGER {table}_restamp_{event.lower()} AFTER {event} ON {table} "  # noqa: S608 (constants)
                       "BEGIN UPDATE people_stamp SET stamp = random() WHERE id = 1; END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table in TABLES:
            op.execute(f"DROP TRIGGER {table}_restamp ON {table}")
        op.execute("DROP FUNCTION people_restamp()")
        op.execute("DROP SEQUENCE people_stamp_seq")
    else:
        for table in TABLES:
            for event in SQLITE_EVENTS:
                op.execute(f"DROP TRIGGER {table}_restamp_{event.lower()}")
    op.drop_table("people_stamp")

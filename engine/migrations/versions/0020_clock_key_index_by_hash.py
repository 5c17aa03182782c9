"""PostgreSQL: the unique key of a clock indexes the md5 of its key (16 bytes), not the key's text.

`uq_sla_clock_instance_key` guards one clock per (instance, key) and serves `instance_id =` lookups
(0014). A per-task key is `<name>:<task uuid>`, ~50 bytes of text in every index entry: the index was
~387 bytes per open instance (bench.size, 3.3 clocks each), 8% of the database. Indexing
`md5(key)::uuid` keeps the same guarantee (two different keys of one instance colliding in md5 is not
a practical concern) with 16-byte entries, and the leading `instance_id` still serves its lookups.
Nothing looks a clock up by its key through this index: clocks are loaded by instance.
SQLite keeps the plain unique key (its size goal has room; it has no uuid type).

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

NAME = "uq_sla_clock_instance_key"


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_constraint(NAME, "sla_clock", type_="unique")
    op.execute(f"CREATE UNIQUE INDEX {NAME} ON sla_clock (instance_id, (md5(key)::uuid))")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.drop_index(NAME, table_name="sla_clock")
    op.create_unique_constraint(NAME, "sla_clock", ["instance_id", "key"])

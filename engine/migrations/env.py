"""Alembic environment: runs against the engine handed in by engine.db.migrate."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import engine.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    """Run the migrations in one transaction. On SQLite, with foreign keys off meanwhile and checked at the end.

    A batch migration rebuilds a table (copy, drop, rename); dropping a table that others reference would,
    with foreign keys on, delete through them or fail. SQLite's own procedure for altering a table: foreign
    keys off (outside any transaction), alter, `PRAGMA foreign_key_check` before committing, then on again.
    """
    connectable = config.attributes["engine"]
    with connectable.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=sqlite)
            with context.begin_transaction():
                context.run_migrations()
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").all()
                    if broken:
                        raise RuntimeError(f"migration left rows whose foreign keys point nowhere: {broken[:5]}")
            connection.commit()
        finally:
            if sqlite:
                connection.rollback()
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()


run_migrations_online()

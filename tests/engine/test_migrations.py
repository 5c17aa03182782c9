"""The migrations build exactly the schema the models declare, on both databases."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

from engine.instances import Funnel


def test_given_the_migrated_schema_then_every_table_and_index_matches_the_models(funnel: Funnel) -> None:
    # given a database migrated to head (the funnel fixture migrates); when alembic compares it with the models
    with funnel.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    # then nothing differs: no missing or extra table, column, type, nullability or index
    assert diff == []

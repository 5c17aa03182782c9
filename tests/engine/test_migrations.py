"""The migrations build exactly the schema the models declare, on both databases."""

from __future__ import annotations

from engine.instances import Funnel
from tests.db_helpers import model_diff


def test_given_the_migrated_schema_then_every_table_and_index_matches_the_models(funnel: Funnel) -> None:
    # given a database migrated to head (the funnel fixture migrates); when alembic compares it with the models
    diff = model_diff(funnel.engine)
    # then nothing differs: no missing or extra table, column, type, nullability or index
    assert diff == []

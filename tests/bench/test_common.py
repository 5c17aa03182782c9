"""bench.common.checkpoint: a measured PostgreSQL phase starts flushed and says how many checkpoints it saw."""

from __future__ import annotations

import sqlalchemy as sa

from bench.common import checkpoint, checkpoints_since


def _write(url: str, rows: int) -> None:
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE IF NOT EXISTS scratch (id integer PRIMARY KEY, note text)"))
            conn.execute(sa.text("INSERT INTO scratch (id, note) VALUES (:id, :note)"),
                         [{"id": i, "note": "x" * 200} for i in range(rows)])
    finally:
        engine.dispose()


def test_given_a_database_with_dirty_pages_when_checkpointed_then_the_count_includes_our_own_flush(
        db_url: str) -> None:
    # given: a phase's worth of writes not yet flushed
    _write(db_url, 500)

    # when: flushed before a phase, then a second flush inside it
    before = checkpoint(db_url)
    inside = checkpoint(db_url)
    seen = checkpoints_since(db_url, before)

    # then: PostgreSQL counts our own CHECKPOINT (at least one, more if the server made one meanwhile);
    # SQLite has no server checkpoints to report
    if db_url.startswith("sqlite"):
        assert (before, inside, seen) == (None, None, None)
    else:
        assert isinstance(before, int) and isinstance(inside, int)
        assert seen is not None and seen >= 1
        assert inside - before >= 1

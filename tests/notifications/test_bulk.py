"""Column-array inserts (PostgreSQL) and the pipeline that sends several in one round trip."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlmodel import Session, col

from engine.db import make_engine, migrate
from notifications.bulk import array_insert, insert_arrays, pipeline
from notifications.models import OutboxMessage

AT = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
COLUMNS = {"dedupe_key": "varchar", "kind": "varchar", "recipients": "jsonb", "subject": "varchar", "text": "text",
           "created_at": "timestamptz", "attempts": "int4", "next_attempt_at": "timestamptz"}
INSERT = array_insert("outbox", COLUMNS, suffix="ON CONFLICT (dedupe_key) DO NOTHING RETURNING id")
PLAIN = array_insert("outbox", COLUMNS)


def message(key: str, **overrides: object) -> dict[str, object]:
    return {"dedupe_key": key, "kind": "test", "recipients": ["ann@example.com"], "subject": f"about {key}",
            "text": "body", "created_at": AT, "attempts": 0, "next_attempt_at": AT, **overrides}


def keys(db: Engine) -> list[str]:
    with Session(db) as session:
        return list(session.execute(sa.select(col(OutboxMessage.dedupe_key)).order_by(col(OutboxMessage.dedupe_key)))
                    .scalars())


def test_the_statement_names_each_column_with_its_array_type() -> None:
    assert INSERT.statement == (
        "INSERT INTO outbox (dedupe_key, kind, recipients, subject, text, created_at, attempts, next_attempt_at) "
        "SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::jsonb[], %b::varchar[], %b::text[], "
        "%b::timestamptz[], %b::int4[], %b::timestamptz[]) ON CONFLICT (dedupe_key) DO NOTHING RETURNING id")
    assert INSERT.columns == tuple(COLUMNS) and INSERT.json == {"recipients"}
    assert PLAIN.statement.endswith("%b::timestamptz[])")


def test_given_rows_then_one_statement_inserts_them_and_counts_what_it_returned(pg_db: Engine) -> None:
    # given one key already there
    with Session(pg_db) as session:
        insert_arrays(session, INSERT, [message("k1")], returning=True)
        session.commit()
    # when three rows come, one of them that key
    with Session(pg_db) as session:
        added = insert_arrays(session, INSERT, [message("k1"), message("k2"), message("k3")], returning=True)
        session.commit()
    # then two were added, with their JSON as JSON
    assert added == 2 and keys(pg_db) == ["k1", "k2", "k3"]
    with Session(pg_db) as session:
        assert {m.recipients[0] for m in session.execute(sa.select(OutboxMessage)).scalars()} == {"ann@example.com"}


def test_given_a_pipeline_then_both_statements_land_in_the_same_transaction(pg_db: Engine) -> None:
    # when two inserts share a pipeline, the first not fetched
    with Session(pg_db) as session:
        with pipeline(session):
            assert insert_arrays(session, PLAIN, [message("a1"), message("a2")]) == 2
            assert insert_arrays(session, INSERT, [message("b1")], returning=True) == 1
        # then nothing is visible before the commit, everything after
        assert keys(pg_db) == []
        session.commit()
    assert keys(pg_db) == ["a1", "a2", "b1"]


def test_given_a_failing_statement_in_a_pipeline_then_it_raises_and_nothing_of_the_transaction_stays(
        pg_db: Engine) -> None:
    # given a key longer than the column allows in the first, unfetched statement
    with Session(pg_db) as session, pytest.raises(psycopg.errors.StringDataRightTruncation), pipeline(session):
        insert_arrays(session, PLAIN, [message("ok"), message("x" * 400)])
        insert_arrays(session, INSERT, [message("later")], returning=True)
    # then neither statement left a row
    assert keys(pg_db) == []


def test_given_sqlite_then_the_pipeline_changes_nothing(tmp_path: Path) -> None:
    db = make_engine(f"sqlite:///{tmp_path / 'bulk.sqlite3'}")
    migrate(db)
    with Session(db) as session:
        with pipeline(session):
            session.execute(sa.insert(OutboxMessage.__table__), [message("s1")])  # type: ignore[attr-defined]
        session.commit()
    assert keys(db) == ["s1"]
    db.dispose()

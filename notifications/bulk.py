"""PostgreSQL: many rows in one INSERT whose parameters are one array per column, sent in binary.

The multi-row VALUES form SQLAlchemy builds for many rows is a long query that psycopg re-parses (a regex per
placeholder, uncached past 4 KB) and whose JSON it dumps as text: ~170 us per e-mail, most of what a burst
of escalations cost. An executemany (SQLAlchemy's form for rows without RETURNING) sends one prepared
statement per row: 1.1 ms for the audit entries of a 28-level tick. Column arrays in binary cost ~15 us a
row and one statement. Both the outbox (notifications.outbox) and the ticker's audit entries
(engine.ticker_batch) insert this way; it lives here because notifications may not import engine.

`pipeline(session)` lets a caller send several such statements in one round trip (psycopg's pipeline mode):
a statement whose rows are not fetched waits in the pipeline, and the first fetch (or leaving the block)
sends them all. A failing statement raises there, and the transaction is then aborted as after any error.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session


@dataclass(frozen=True)
class ArrayInsert:
    """An `INSERT .. SELECT * FROM unnest(%b::type[], ...)` and the columns its arrays fill, in order."""

    statement: str
    columns: tuple[str, ...]
    json: frozenset[str]  # the jsonb columns: their values are sent as JSON


def array_insert(table: str, columns: Mapping[str, str], *, suffix: str = "") -> ArrayInsert:
    """The statement for `insert_arrays`: `columns` maps each column to its PostgreSQL type; `suffix` is e.g.
    "ON CONFLICT (k) DO NOTHING RETURNING id". Built once per statement, from names in code, never from input."""
    arrays = ", ".join(f"%b::{kind}[]" for kind in columns.values())
    statement = f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays}) {suffix}"  # noqa: S608
    return ArrayInsert(statement.rstrip(), tuple(columns), frozenset(c for c, t in columns.items() if t == "jsonb"))


def insert_arrays(session: Session, insert: ArrayInsert, rows: Sequence[Mapping[str, Any]], *,
                  returning: bool = False) -> int:
    """Run `insert` for `rows` (each a mapping of at least its columns) in the session's transaction.

    With `returning`, how many rows the statement returned (e.g. those not skipped by ON CONFLICT); without,
    the rows are not fetched (so a `pipeline` sends them later) and it returns how many were given.
    """
    from psycopg.types.json import Jsonb  # only PostgreSQL reaches here, and psycopg is its driver

    arrays = [[Jsonb(r[c]) if r[c] is not None else None for r in rows] if c in insert.json else [r[c] for r in rows]
              for c in insert.columns]
    with _driver(session).cursor() as cursor:
        cursor.execute(insert.statement, arrays)
        return len(cursor.fetchall()) if returning else len(rows)


@contextmanager
def pipeline(session: Session) -> Iterator[None]:
    """On PostgreSQL, the statements sent through `insert_arrays` in the block share round trips; else nothing."""
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    with _driver(session).pipeline():
        yield


def _driver(session: Session) -> Any:
    """The psycopg connection under the session's (its transaction already begun by SQLAlchemy)."""
    driver = session.connection().connection.driver_connection
    assert driver is not None
    return driver

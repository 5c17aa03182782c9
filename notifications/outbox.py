"""The e-mail outbox: rows written in the same transaction as the event that caused them.

Contract (the SLA ticker and the assignment alerts write through this; notifications.smtp reads it):
    enqueue(session, *, dedupe_key, to, subject, text, html, created_at, kind, ref) -> bool
        Adds one message unless a message with the same dedupe_key exists (returns False then).
        Never commits: the caller's transaction decides.

Dedupe: the key names the *reason* for a message (e.g. "escalation:clock:17:level:1"), never the
attempt, so re-running the code that caused it adds nothing. A duplicate is checked for first (the
common case, no write), and the insert itself is `INSERT .. ON CONFLICT (dedupe_key) DO NOTHING`
on PostgreSQL and SQLite, so a concurrent transaction enqueuing the same key neither raises nor
poisons the caller's transaction: on PostgreSQL the second insert waits for the first to commit
and then does nothing. The key also yields the Message-ID (notifications.smtp), so the receiving
side can drop the rare second copy after a crash between sending and marking.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from notifications.models import OutboxMessage

SUBJECT_LIMIT = 500
KEY_LIMIT = 300


def enqueue(session: Session, *, dedupe_key: str, to: str | Sequence[str], subject: str, text: str,
            html: str | None, created_at: datetime, kind: str, ref: str | None = None) -> bool:
    """Add one message to the caller's transaction unless its key exists; True when it was added."""
    values = _row(dedupe_key=dedupe_key, to=to, subject=subject, text=text, html=html, created_at=created_at,
                  kind=kind, ref=ref)
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    if session.execute(sa.select(table.c.id).where(table.c.dedupe_key == values["dedupe_key"])).first() is not None:
        return False
    stmt = _insert(session).values(**values).on_conflict_do_nothing(index_elements=["dedupe_key"])
    # RETURNING, not rowcount: psycopg reports -1 for a skipped ON CONFLICT insert
    return session.execute(stmt.returning(table.c.id)).first() is not None


def enqueue_many(session: Session, mails: Sequence[dict[str, Any]]) -> int:
    """`enqueue` for many messages (its keyword arguments as dicts) in one statement; how many were added.

    Same checks and the same exactly-once rule: `INSERT .. ON CONFLICT (dedupe_key) DO NOTHING`, so a key that
    exists, or that a concurrent transaction is adding, adds nothing and never fails the caller's transaction.
    """
    rows: dict[str, dict[str, Any]] = {}
    for mail in mails:
        values = _row(**mail)
        rows.setdefault(values["dedupe_key"], values)
    if not rows:
        return 0
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    stmt = _insert(session).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(table.c.id)
    return len(session.execute(stmt, list(rows.values())).all())


def _row(*, dedupe_key: str, to: str | Sequence[str], subject: str, text: str, html: str | None,
         created_at: datetime, kind: str, ref: str | None = None) -> dict[str, Any]:
    """A checked outbox row: key length, an aware time, plain recipients, a one-line subject."""
    key = dedupe_key.strip()
    if not key or len(key) > KEY_LIMIT:
        raise ValueError(f"dedupe_key must be 1..{KEY_LIMIT} characters, got {dedupe_key!r}")
    if created_at.tzinfo is None:
        raise ValueError("created_at must be an aware datetime")
    return dict(dedupe_key=key, kind=kind, ref=ref, recipients=clean_recipients(to), subject=clean_subject(subject),
                text=text, html=html, created_at=created_at, attempts=0, next_attempt_at=created_at)


def _insert(session: Session) -> Any:
    """The dialect's INSERT (both have ON CONFLICT DO NOTHING)."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert if dialect == "sqlite" else None
    if insert is None:  # pragma: no cover - only SQLite and PostgreSQL are supported stores
        raise RuntimeError(f"the outbox supports SQLite and PostgreSQL, not {dialect}")
    return insert(OutboxMessage.__table__)  # type: ignore[attr-defined]


def get(session: Session, dedupe_key: str) -> OutboxMessage | None:
    """The message enqueued under `dedupe_key`, if any (tests and the API read this)."""
    stmt = sa.select(OutboxMessage).where(OutboxMessage.dedupe_key == dedupe_key)  # type: ignore[arg-type]
    return session.execute(stmt).scalars().first()


def clean_recipients(to: str | Sequence[str]) -> list[str]:
    """Plain addresses only, no duplicates, so a header can never be injected through a user's e-mail."""
    given = [to] if isinstance(to, str) else list(to)
    out: list[str] = []
    for address in given:
        a = address.strip()
        if not a or "@" not in a or any(ch.isspace() or ch in "<>,;\"" for ch in a):
            raise ValueError(f"not a plain e-mail address: {address!r}")
        if a.lower() not in (o.lower() for o in out):
            out.append(a)
    if not out:
        raise ValueError("a message needs at least one recipient")
    return out


def clean_subject(subject: str) -> str:
    """One line of at most SUBJECT_LIMIT characters: line breaks in a subject are header injection."""
    line = " ".join(subject.split())
    if not line:
        raise ValueError("a message needs a subject")
    return line if len(line) <= SUBJECT_LIMIT else line[: SUBJECT_LIMIT - 1] + "…"

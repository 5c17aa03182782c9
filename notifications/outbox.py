"""The e-mail outbox: rows written in the same transaction as the event that caused them.

Contract (the SLA ticker and the assignment alerts write through this; notifications.smtp reads it):
    enqueue(session, *, dedupe_key, to, created_at, kind, ref, template, context) -> bool
    enqueue(session, *, dedupe_key, to, created_at, kind, ref, subject, text, html) -> bool
        Adds one message unless a message with the same dedupe_key exists (returns False then).
        Never commits: the caller's transaction decides.
    content(row) -> Rendered(subject, text, html)
        What a row sends: its template rendered with its stored context, or its literal parts.

Render at delivery: a templated message is stored as its template's name and its context (JSON, see
notifications.render.store), and the sender renders it. design.md has the event's transaction write
the rendered e-mail; rendering three Jinja templates per e-mail was over half of what firing an SLA
level cost, inside the ticker's transaction, so the transaction now writes what the e-mail will say
(the context, fixed at that moment: recipients, times, figures) and rendering moves to the sender,
off the ticker's path. The template name is checked and the context must be storable when enqueued;
a template that fails to render at delivery is retried and then given up like a refused message.

Dedupe: the key names the *reason* for a message (e.g. "escalation:clock:17:level:1"), never the
attempt, so re-running the code that caused it adds nothing. A duplicate is checked for first (the
common case, no write), and the insert itself is `INSERT .. ON CONFLICT (dedupe_key) DO NOTHING`
on PostgreSQL and SQLite, so a concurrent transaction enqueuing the same key neither raises nor
poisons the caller's transaction: on PostgreSQL the second insert waits for the first to commit
and then does nothing. The key also yields the Message-ID (notifications.smtp), so the receiving
side can drop the rare second copy after a crash between sending and marking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from notifications.bulk import array_insert, insert_arrays
from notifications.models import OutboxMessage
from notifications.render import Rendered, TemplateNotFound, names, render, restore, store

SUBJECT_LIMIT = 500
KEY_LIMIT = 300


def enqueue(session: Session, *, dedupe_key: str, to: str | Sequence[str], created_at: datetime, kind: str,
            ref: str | None = None, template: str | None = None, context: Mapping[str, Any] | None = None,
            subject: str | None = None, text: str | None = None, html: str | None = None) -> bool:
    """Add one message (a template and its context, or literal parts) unless its key exists; True when added."""
    values = _row(dedupe_key=dedupe_key, to=to, created_at=created_at, kind=kind, ref=ref, template=template,
                  context=context, subject=subject, text=text, html=html)
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
    if session.get_bind().dialect.name == "postgresql":  # also inside a notifications.bulk.pipeline
        return insert_arrays(session, _INSERT_ARRAYS, list(rows.values()), returning=True)
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    stmt = _insert(session).on_conflict_do_nothing(index_elements=["dedupe_key"]).returning(table.c.id)
    return len(session.execute(stmt, list(rows.values())).all())


# PostgreSQL: one INSERT .. SELECT FROM unnest(column arrays), the arrays sent in binary (notifications.bulk)
_INSERT_ARRAYS = array_insert("outbox", {
    "dedupe_key": "varchar", "kind": "varchar", "ref": "varchar", "recipients": "jsonb", "template": "varchar",
    "context": "jsonb", "subject": "varchar", "text": "text", "html": "text", "created_at": "timestamptz",
    "attempts": "int4", "next_attempt_at": "timestamptz"}, suffix="ON CONFLICT (dedupe_key) DO NOTHING RETURNING id")


def _row(*, dedupe_key: str, to: str | Sequence[str], created_at: datetime, kind: str, ref: str | None = None,
         template: str | None = None, context: Mapping[str, Any] | None = None, subject: str | None = None,
         text: str | None = None, html: str | None = None) -> dict[str, Any]:
    """A checked outbox row: key length, an aware time, plain recipients, a known template or a one-line subject."""
    key = dedupe_key.strip()
    if not key or len(key) > KEY_LIMIT:
        raise ValueError(f"dedupe_key must be 1..{KEY_LIMIT} characters, got {dedupe_key!r}")
    if created_at.tzinfo is None:
        raise ValueError("created_at must be an aware datetime")
    row: dict[str, Any] = dict(dedupe_key=key, kind=kind, ref=ref, recipients=clean_recipients(to),
                               created_at=created_at, attempts=0, next_attempt_at=created_at, template=None,
                               context=None, subject=None, text=None, html=None)
    if template is not None:
        if subject is not None or text is not None or html is not None:
            raise ValueError("give a template and its context, or a subject and a text, not both")
        if template not in names():
            raise TemplateNotFound(template)
        if not isinstance(context, Mapping):
            raise ValueError(f"template {template!r} needs its context as a mapping, got {type(context).__name__}")
        row.update(template=template, context=store(context))
    else:
        if context is not None:
            raise ValueError("a context goes with a template; name the template")
        if subject is None or text is None:
            raise ValueError("a message needs a template and its context, or a subject and a text")
        row.update(subject=clean_subject(subject), text=text, html=html)
    return row


def content(row: Any) -> Rendered:
    """What an outbox row (OutboxMessage or a row with its columns) sends: rendered now, or its literal parts."""
    if row.template is not None:
        rendered = render(row.template, restore(row.context or {}))
        return Rendered(clean_subject(rendered.subject), rendered.text, rendered.html)
    return Rendered(row.subject, row.text, row.html)


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

"""The outbox: one row per dedupe key, written in the caller's transaction, never committed by enqueue."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Engine
from sqlmodel import Session, SQLModel, select

from engine.db import alembic_config, make_engine, migrate
from notifications import outbox
from notifications.models import JSONList, OutboxMessage, UTCDateTime
from notifications.render import TemplateNotFound, render

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def message(key: str = "escalation:clock:1:level:1", **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(dedupe_key=key, to=["ann@example.com"], subject="Breached: Acme",
                                  text="late", html="<p>late</p>", created_at=NOW, kind="escalation",
                                  ref="instance:1")
    return {**values, **overrides}


def rows(engine: Engine) -> list[OutboxMessage]:
    with Session(engine) as session:
        return list(session.exec(select(OutboxMessage).order_by(OutboxMessage.id)))  # type: ignore[arg-type]


def test_given_a_message_when_enqueued_and_committed_then_one_due_row_with_every_field(db: Engine) -> None:
    # when
    with Session(db) as session:
        added = outbox.enqueue(session, **message(to="ann@example.com"))
        session.commit()
    # then
    assert added is True
    [row] = rows(db)
    assert (row.dedupe_key, row.kind, row.ref, row.recipients) == (
        "escalation:clock:1:level:1", "escalation", "instance:1", ["ann@example.com"])
    assert (row.subject, row.text, row.html) == ("Breached: Acme", "late", "<p>late</p>")
    assert (row.created_at, row.next_attempt_at, row.attempts) == (NOW, NOW, 0)
    assert row.sent_at is None and row.failed_at is None and row.claimed_by is None


def test_given_the_callers_transaction_rolls_back_then_nothing_was_enqueued(db: Engine) -> None:
    with Session(db) as session:
        assert outbox.enqueue(session, **message())
        session.rollback()
    assert rows(db) == []


def test_given_a_key_already_enqueued_then_a_second_enqueue_adds_nothing_and_the_transaction_goes_on(
        db: Engine) -> None:
    # given
    with Session(db) as session:
        outbox.enqueue(session, **message())
        session.commit()
    # when the same reason fires again (a retried tick), in a transaction that also does other work
    with Session(db) as session:
        again = outbox.enqueue(session, **message(subject="a different rendering"))
        same_txn = outbox.enqueue(session, **message("other-key"))
        twice_in_txn = outbox.enqueue(session, **message("other-key"))
        session.commit()
    # then
    assert (again, same_txn, twice_in_txn) == (False, True, False)
    assert [r.dedupe_key for r in rows(db)] == ["escalation:clock:1:level:1", "other-key"]
    assert rows(db)[0].subject == "Breached: Acme"


def test_given_two_concurrent_transactions_with_one_key_then_one_row_and_neither_fails(db: Engine) -> None:
    # given transaction A has enqueued but not committed
    results: dict[str, Any] = {}
    first = Session(db)
    results["a"] = outbox.enqueue(first, **message())

    def second() -> None:
        with Session(db) as session:
            try:
                results["b"] = outbox.enqueue(session, **message())
                session.commit()
            except Exception as err:  # the assertion below shows it
                results["b"] = err

    # when B enqueues the same key meanwhile (PostgreSQL: it waits on A's uncommitted key)
    worker = threading.Thread(target=second)
    worker.start()
    time.sleep(0.3)
    first.commit()
    first.close()
    worker.join(timeout=20)
    # then
    assert not worker.is_alive()
    assert results == {"a": True, "b": False}
    assert len(rows(db)) == 1


def test_given_a_duplicate_that_slipped_past_the_check_then_on_conflict_keeps_the_transaction_usable(
        db: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a committed row, and the read-first check blinded (as if a concurrent writer won the race)
    with Session(db) as session:
        outbox.enqueue(session, **message())
        session.commit()
    real_execute = Session.execute

    def blind(self: Session, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(statement, sa.Select) and "dedupe_key" in str(statement):
            statement = statement.where(sa.false())
        return real_execute(self, statement, *args, **kwargs)

    monkeypatch.setattr(Session, "execute", blind)
    # when
    with Session(db) as session:
        added = outbox.enqueue(session, **message())
        also = outbox.enqueue(session, **message("next"))
        session.commit()
    # then
    assert (added, also) == (False, True)
    assert len(rows(db)) == 2


@pytest.mark.parametrize("to", ["", [], "not-an-address", "a@b.c\r\nBcc: x@y.z", ["a@b.c", "Eve <e@x.y>"]])
def test_given_a_bad_recipient_then_refused_before_anything_is_written(db: Engine, to: Any) -> None:
    with Session(db) as session, pytest.raises(ValueError):
        outbox.enqueue(session, **message(to=to))


def test_given_a_subject_with_line_breaks_then_it_is_one_line_and_recipients_are_deduplicated(db: Engine) -> None:
    with Session(db) as session:
        outbox.enqueue(session, **message(subject="Late\r\nBcc: eve@example.com", to=["a@x.io", "A@x.io", "b@x.io"]))
        session.commit()
    [row] = rows(db)
    assert row.subject == "Late Bcc: eve@example.com"
    assert row.recipients == ["a@x.io", "b@x.io"]


def test_given_a_naive_time_or_empty_key_then_refused(db: Engine) -> None:
    with Session(db) as session:
        with pytest.raises(ValueError, match="aware"):
            outbox.enqueue(session, **message(created_at=datetime(2026, 1, 1)))
        with pytest.raises(ValueError, match="dedupe_key"):
            outbox.enqueue(session, **message(key=" "))


DEADLINE = datetime(2026, 11, 23, 14, 0, tzinfo=UTC)


def escalation_context(**overrides: Any) -> dict[str, Any]:
    return {"recipient": {"name": "Anna Schmidt", "email": "ann@example.com", "time_zone": "Europe/Berlin"},
            "item": {"kind": "opportunity", "title": "Acme Steel", "ref": "instance 1",
                     "url": "https://funnel.example/api/instances/1", "stage": "Qualification"},
            "customer": {"name": "Acme Steel", "tier": "A"},
            "sla": {"name": "first response", "deadline": DEADLINE, "business_seconds_left": -3600.0},
            "level": 1, "also_told": [], **overrides}


def templated(key: str = "escalation:clock:1:level:1", **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = dict(dedupe_key=key, to="ann@example.com", template="escalation",
                                  context=escalation_context(), created_at=NOW, kind="escalation", ref="instance:1")
    return {**values, **overrides}


def test_given_a_templated_message_then_its_template_and_context_are_stored_and_content_renders_them(
        db: Engine) -> None:
    # when
    with Session(db) as session:
        assert outbox.enqueue(session, **templated())
        session.commit()
    # then the row holds the template and a JSON context (nothing rendered yet) ...
    [row] = rows(db)
    assert (row.template, row.subject, row.text, row.html) == ("escalation", None, None, None)
    assert row.context is not None and row.context["sla"]["deadline"] == {"$datetime": DEADLINE.isoformat()}
    # ... and what it sends is exactly the template rendered with the original context
    assert outbox.content(row) == render("escalation", escalation_context())
    assert outbox.content(row).subject.startswith('[Breached] First response for opportunity "Acme Steel"')


def test_given_a_literal_message_then_content_is_its_own_parts(db: Engine) -> None:
    with Session(db) as session:
        outbox.enqueue(session, **message())
        session.commit()
    assert outbox.content(rows(db)[0]) == ("Breached: Acme", "late", "<p>late</p>")


@pytest.mark.parametrize("overrides,error,words", [
    (dict(template="nope"), TemplateNotFound, "no e-mail template 'nope'; there are: assignment_alert, chase"),
    (dict(context=None), ValueError, "needs its context as a mapping"),
    (dict(context=["not", "a", "mapping"]), ValueError, "needs its context as a mapping"),
    (dict(subject="also literal"), ValueError, "not both"),
    (dict(context=escalation_context(level={1, 2})), TypeError, "level: a set cannot be stored"),
    (dict(context=escalation_context(sla={"deadline": datetime(2026, 11, 23)})), TypeError, "naive datetime"),
    (dict(template=None, context=None), ValueError, "needs a template and its context, or a subject and a text"),
    (dict(template=None), ValueError, "a context goes with a template"),
])
def test_given_a_message_that_could_not_be_sent_then_it_is_refused_before_anything_is_written(
        db: Engine, overrides: dict[str, Any], error: type[Exception], words: str) -> None:
    with Session(db) as session:
        with pytest.raises(error) as raised:
            outbox.enqueue(session, **templated(**overrides))
        assert words in str(raised.value)
        session.commit()
    assert rows(db) == []


def test_given_many_templated_messages_then_enqueue_many_stores_each_once(db: Engine) -> None:
    with Session(db) as session:
        mails = [templated(f"k{n % 3}", context=escalation_context(level=n % 3)) for n in range(6)]
        assert outbox.enqueue_many(session, mails) == 3
        session.commit()
    assert [(r.dedupe_key, outbox.content(r).subject.split("]")[0]) for r in rows(db)] == [
        ("k0", "[Warning"), ("k1", "[Breached"), ("k2", "[Escalation level 2")]


def test_given_the_migrated_schema_then_the_notification_tables_match_the_models(db: Engine) -> None:
    with db.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
    ours = [d for d in diff if "'outbox'" in repr(d) or "'scheduler_heartbeat'" in repr(d)]
    assert ours == []


def test_given_some_keys_exist_then_enqueue_many_adds_only_the_new_ones_with_every_field(db: Engine) -> None:
    # given one message already queued
    with Session(db) as session:
        outbox.enqueue(session, **message("k1", subject="first"))
        session.commit()
    # when a batch repeats it beside a literal and a templated new one
    later = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
    with Session(db) as session:
        added = outbox.enqueue_many(session, [message("k1", subject="again"), message("k2", ref=None, html=None,
                                                                                    created_at=later),
                                              templated("k3", to=["a@x.io", "b@x.io"])])
        session.commit()
    # then two were added, the first is untouched, and each new row holds exactly what enqueue would store
    assert added == 2
    got = {r.dedupe_key: r for r in rows(db)}
    assert got["k1"].subject == "first"
    k2, k3 = got["k2"], got["k3"]
    assert (k2.subject, k2.text, k2.html, k2.ref, k2.template, k2.context) == ("Breached: Acme", "late", None, None,
                                                                                None, None)
    assert (k2.created_at, k2.next_attempt_at, k2.attempts, k2.recipients) == (later, later, 0, ["ann@example.com"])
    assert (k3.template, k3.subject, k3.recipients, k3.ref) == ("escalation", None, ["a@x.io", "b@x.io"],
                                                                 "instance:1")
    assert outbox.content(k3) == render("escalation", escalation_context())


def test_given_queued_mail_when_the_outbox_migration_runs_up_and_down_then_every_message_stays_sendable(
        db_url: str) -> None:
    # given a database before revision 0011 with a rendered message queued
    engine = make_engine(db_url)
    try:
        migrate(engine, "0010")
        old = sa.table("outbox", sa.column("recipients", JSONList), sa.column("created_at", UTCDateTime()),
                       sa.column("next_attempt_at", UTCDateTime()),
                       *(sa.column(c) for c in ("dedupe_key", "kind", "subject", "text", "attempts")))
        with engine.begin() as conn:
            conn.execute(sa.insert(old).values(dedupe_key="old", kind="escalation", recipients=["ann@example.com"],
                                               subject="Old", text="old body", created_at=NOW, attempts=0,
                                               next_attempt_at=NOW))
        # when it is upgraded, a templated message is queued, and it is downgraded again
        migrate(engine)
        with Session(engine) as session:
            outbox.enqueue(session, **templated("new"))
            session.commit()
        assert [outbox.content(r).subject for r in rows(engine)] == [
            "Old", render("escalation", escalation_context()).subject]
        command.downgrade(alembic_config(engine), "0010")
        # then the old one kept its parts and the templated one was rendered into its parts: nothing lost
        with engine.connect() as conn:
            got = conn.execute(sa.text("SELECT dedupe_key, subject, text FROM outbox ORDER BY id")).all()
        expected = render("escalation", escalation_context())
        assert [tuple(r) for r in got] == [("old", "Old", "old body"), ("new", expected.subject, expected.text)]
    finally:
        engine.dispose()


def test_given_an_enqueued_message_then_get_finds_it_by_key(db: Engine) -> None:
    with Session(db) as session:
        outbox.enqueue(session, **message())
        session.commit()
        found = outbox.get(session, "escalation:clock:1:level:1")
        assert found is not None and found.kind == "escalation"
        assert outbox.get(session, "nope") is None


def test_the_notifications_package_never_imports_the_engine() -> None:
    # imports flow api -> engine -> notifications; a fresh interpreter shows what notifications pulls in
    code = ("import sys, notifications.outbox, notifications.render, notifications.smtp, notifications.alerts; "
            "print(sorted(m for m in sys.modules if m == 'engine' or m.startswith(('engine.', 'api'))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert done.stdout.strip() == "[]"

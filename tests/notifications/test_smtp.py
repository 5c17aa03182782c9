"""Delivery to a real local SMTP server: right parts, stable Message-ID, retries that delay but never lose."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from notifications import outbox, smtp
from notifications.models import OutboxMessage
from notifications.render import render
from notifications.smtp import RetryPolicy, SmtpSettings, deliver_pending, message_id
from tests.conftest import FakeClock
from tests.notifications.smtp_server import SmtpServer
from tests.notifications.test_outbox import escalation_context

KEY = "escalation:clock:7:level:1"


def enqueue(engine: Engine, clock: FakeClock, key: str = KEY, **overrides: Any) -> None:
    values: dict[str, Any] = dict(dedupe_key=key, to=["ann@example.com", "sam@example.com"],
                                  subject="[Breached] First response for Acme", text="Plain body: 1 h overdue\n",
                                  html="<p>HTML body: <b>1 h</b> overdue</p>\n", created_at=clock.now,
                                  kind="escalation", ref="instance:7")
    with Session(engine) as session:
        outbox.enqueue(session, **{**values, **overrides})
        session.commit()


def row(engine: Engine, key: str = KEY) -> OutboxMessage:
    with Session(engine) as session:
        found = outbox.get(session, key)
        assert found is not None
        return found


def test_given_a_due_message_then_it_arrives_with_recipients_subject_both_parts_and_a_stable_id(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer) -> None:
    # given
    enqueue(db, clock)
    # when
    result = deliver_pending(db, settings=smtp_server.settings(), now=clock.now)
    # then
    assert (result.claimed, result.sent, result.deferred, result.failed) == (1, 1, 0, 0)
    [got] = smtp_server.received
    assert got.mail_from == "funnel@funnel.example"
    assert got.rcpt_tos == ["ann@example.com", "sam@example.com"]
    msg = got.message
    assert msg["Subject"] == "[Breached] First response for Acme"
    assert msg["From"] == "Funnel <funnel@funnel.example>" and msg["To"] == "ann@example.com, sam@example.com"
    assert msg["Message-ID"] == message_id(KEY, "funnel@funnel.example")
    assert msg["Message-ID"].endswith("@funnel.example>") and msg["Auto-Submitted"] == "auto-generated"
    assert msg.get_content_type() == "multipart/alternative"
    assert got.part("plain") == "Plain body: 1 h overdue\n"
    assert got.part("html") == "<p>HTML body: <b>1 h</b> overdue</p>\n"
    sent = row(db)
    assert (sent.sent_at, sent.attempts, sent.claimed_by, sent.lease_until, sent.last_error) == (
        clock.now, 1, None, None, None)
    # and a second pass sends nothing more
    assert deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(hours=1)).claimed == 0
    assert len(smtp_server.received) == 1


def test_given_the_server_is_down_then_mail_waits_with_backoff_and_arrives_exactly_once_when_it_is_up(
        db: Engine, clock: FakeClock, smtp_down: SmtpServer) -> None:
    # given
    enqueue(db, clock)
    settings = smtp_down.settings()
    # when the server is not listening
    down = deliver_pending(db, settings=settings, now=clock.now)
    # then the attempt is recorded and the message backs off
    assert (down.claimed, down.sent, down.deferred) == (1, 0, 1)
    waiting = row(db)
    assert waiting.attempts == 1 and waiting.sent_at is None and waiting.failed_at is None
    assert waiting.next_attempt_at == clock.now + timedelta(seconds=30)
    assert waiting.last_error is not None and "cannot connect" in waiting.last_error
    assert waiting.claimed_by is None
    # when the server comes up, it is not retried before the backoff ends
    smtp_down.start()
    assert deliver_pending(db, settings=settings, now=clock.advance(seconds=29)).claimed == 0
    assert smtp_down.received == []
    # then after the backoff it is delivered, once
    up = deliver_pending(db, settings=settings, now=clock.advance(seconds=2))
    assert (up.sent, up.deferred) == (1, 0)
    assert deliver_pending(db, settings=settings, now=clock.advance(hours=2)).claimed == 0
    [got] = smtp_down.received
    assert got.message["Message-ID"] == message_id(KEY, settings.sender)
    delivered = row(db)
    assert delivered.attempts == 2 and delivered.sent_at is not None and delivered.last_error is None


def test_given_repeated_failures_then_the_wait_doubles_up_to_the_cap_and_never_gives_up(
        db: Engine, clock: FakeClock, smtp_down: SmtpServer) -> None:
    enqueue(db, clock)
    policy = RetryPolicy(base_seconds=10, max_seconds=50)
    waits = []
    for _ in range(5):
        result = deliver_pending(db, settings=smtp_down.settings(), now=clock.now, retry=policy)
        assert result.deferred == 1
        due = row(db).next_attempt_at
        assert due is not None
        waits.append((due - clock.now).total_seconds())
        clock.now = due
    assert waits == [10, 20, 40, 50, 50]
    assert row(db).failed_at is None


def test_given_a_temporary_refusal_then_retried_and_a_permanent_one_stops_after_max_attempts(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer) -> None:
    # given a 4xx for one pass, then a 5xx
    enqueue(db, clock)
    policy = RetryPolicy(base_seconds=1, max_permanent=3)
    smtp_server.sink.refuse = "451 4.3.0 try again later"
    assert deliver_pending(db, settings=smtp_server.settings(), now=clock.now, retry=policy).deferred == 1
    assert "451" in (row(db).last_error or "")
    smtp_server.sink.refuse = "550 5.1.1 no such user"
    # when
    first = deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(seconds=5), retry=policy)
    second = deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(seconds=5), retry=policy)
    # then a 5xx on the third attempt (max_permanent) gives up and keeps the reason
    assert (first.deferred, second.failed) == (1, 1)
    given_up = row(db)
    assert given_up.failed_at == clock.now and given_up.next_attempt_at is None and given_up.sent_at is None
    assert "550" in (given_up.last_error or "") and given_up.attempts == 3
    assert deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(days=1)).claimed == 0
    assert smtp_server.received == []


def enqueue_templated(engine: Engine, clock: FakeClock, key: str, context: dict[str, Any]) -> None:
    with Session(engine) as session:
        outbox.enqueue(session, dedupe_key=key, to="ann@example.com", template="escalation", context=context,
                       created_at=clock.now, kind="escalation", ref="instance:7")
        session.commit()


def test_given_a_templated_message_then_the_sender_renders_it_and_records_the_subject_it_sent(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer) -> None:
    # given an escalation stored as its template and context
    context = escalation_context()
    enqueue_templated(db, clock, KEY, context)
    assert row(db).subject is None
    # when
    result = deliver_pending(db, settings=smtp_server.settings(), now=clock.now)
    # then the recipient gets exactly what the template renders, and the delivery record names the subject
    assert result.sent == 1
    [got] = smtp_server.received
    expected = render("escalation", context)
    assert " ".join(got.message["Subject"].split()) == expected.subject  # a long subject arrives folded
    assert (got.part("plain"), got.part("html")) == (expected.text, expected.html)
    assert "Mon 23 Nov 2026 15:00 CET (Europe/Berlin)" in got.part("plain")
    assert row(db).subject == expected.subject and row(db).text is None


def test_given_a_template_that_cannot_render_then_that_message_is_given_up_and_the_others_are_sent(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer) -> None:
    # given a stored context that lacks a key its template needs (a template changed under a queued message)
    broken = escalation_context()
    del broken["customer"]
    enqueue_templated(db, clock, "broken", broken)
    enqueue_templated(db, clock, "fine", escalation_context())
    policy = RetryPolicy(base_seconds=1, max_permanent=2)
    # when the sender tries it max_permanent times
    first = deliver_pending(db, settings=smtp_server.settings(), now=clock.now, retry=policy)
    second = deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(seconds=5), retry=policy)
    # then the other message went out, and the broken one is given up with the reason, never half-sent
    assert (first.sent, first.deferred, second.failed) == (1, 1, 1)
    assert [r.message["X-Funnel-Kind"] for r in smtp_server.received] == ["escalation"]
    given_up = row(db, "broken")
    assert given_up.failed_at == clock.now and given_up.sent_at is None and given_up.attempts == 2
    assert "template 'escalation' does not render" in (given_up.last_error or "")
    assert "'customer' is undefined" in (given_up.last_error or "")


def test_given_a_crash_between_send_and_record_then_the_resend_carries_the_same_message_id(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the process dies right after the server accepted the message
    enqueue(db, clock)

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("killed")

    with monkeypatch.context() as patch:
        patch.setattr(smtp, "_record", crash)
        with pytest.raises(RuntimeError):
            deliver_pending(db, settings=smtp_server.settings(), now=clock.now)
    # when the next pass runs
    deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(seconds=1))
    # then the receiving side sees two copies of one Message-ID, which it keeps once
    assert len(smtp_server.received) == 2
    assert len({r.message["Message-ID"] for r in smtp_server.received}) == 1
    assert row(db).sent_at is not None


def test_given_a_sender_that_died_holding_a_lease_then_its_rows_are_due_again_after_the_lease(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer) -> None:
    # given a worker claimed the row and vanished (no finally ran)
    enqueue(db, clock)
    with Session(db) as session:
        [claimed] = smtp._claim(session, now=clock.now, token="dead:1", batch=10, lease=600)
        session.commit()
    assert claimed.dedupe_key == KEY
    # then nobody else sends it while the lease lasts, and someone does after
    assert deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(seconds=599)).claimed == 0
    assert deliver_pending(db, settings=smtp_server.settings(), now=clock.advance(seconds=2)).sent == 1
    assert len(smtp_server.received) == 1


def test_given_more_due_than_a_batch_then_the_oldest_go_first_and_the_rest_next_pass(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer) -> None:
    for n in range(3):
        enqueue(db, clock, key=f"k{n}", subject=f"message {n}")
        clock.advance(seconds=1)
    factory = lambda: Session(db)  # noqa: E731  (a session factory works as well as an engine)
    assert deliver_pending(factory, settings=smtp_server.settings(), now=clock.now, batch=2).sent == 2
    assert deliver_pending(factory, settings=smtp_server.settings(), now=clock.now, batch=2).sent == 1
    assert [r.message["Subject"] for r in smtp_server.received] == ["message 0", "message 1", "message 2"]


def test_given_two_senders_at_once_then_every_message_arrives_exactly_once(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer) -> None:
    # given
    for n in range(30):
        enqueue(db, clock, key=f"bulk:{n}", subject=f"bulk {n}")
    results: list[Any] = []

    def sender(name: str) -> None:
        try:
            for _ in range(10):
                results.append(deliver_pending(db, settings=smtp_server.settings(), now=clock.now, batch=4,
                                               worker_id=name))
        except Exception as err:  # shown by the assertion below
            results.append(err)

    # when
    workers = [threading.Thread(target=sender, args=(f"w{i}",)) for i in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=60)
    # then
    assert not [r for r in results if isinstance(r, Exception)]
    subjects = sorted(r.message["Subject"] for r in smtp_server.received)
    assert subjects == sorted(f"bulk {n}" for n in range(30))
    with Session(db) as session:
        assert all(m.sent_at is not None for m in session.exec(select(OutboxMessage)))


def test_given_nothing_due_then_a_pass_writes_nothing(db: Engine, clock: FakeClock, smtp_down: SmtpServer) -> None:
    assert deliver_pending(db, settings=smtp_down.settings(), now=clock.now).claimed == 0


@pytest.mark.parametrize(("fields", "message"), [
    ({"tls": "tls1.3"}, "none, starttls, ssl"), ({"sender": "nobody"}, "not an e-mail address")])
def test_given_bad_smtp_settings_then_refused_with_what_to_fix(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SmtpSettings(host="localhost", **fields)


@pytest.mark.parametrize("tls", ["starttls", "ssl"])
def test_given_tls_the_server_cannot_speak_then_mail_is_deferred_not_lost_or_sent_in_clear(
        db: Engine, clock: FakeClock, smtp_server: SmtpServer, tls: str) -> None:
    enqueue(db, clock)
    result = deliver_pending(db, settings=smtp_server.settings(tls=tls), now=clock.now)
    assert (result.sent, result.deferred) == (0, 1)
    assert smtp_server.received == []
    waiting = row(db)
    assert waiting.sent_at is None and waiting.failed_at is None and "cannot connect" in (waiting.last_error or "")

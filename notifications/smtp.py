"""Delivery of the outbox over SMTP: claim due rows, send each, record the result; retries back off.

Exactly-once, as far as e-mail allows:
- Rows are claimed with a lease (a single `UPDATE .. WHERE id IN (due rows)` statement, the due
  rows locked `FOR UPDATE SKIP LOCKED` on PostgreSQL), so concurrent senders never take the same
  row; a sender that dies leaves rows that fall due again when the lease ends.
- Sending happens outside any database transaction; each result is recorded right after its send.
- A crash (or lost lease) between sending and recording means the message goes out again, with the
  same Message-ID: it is derived from the dedupe key, so mail systems and clients that dedupe on
  Message-ID show it once. That is the one duplicate SMTP cannot rule out; a lost mail it can.
- A server that is down, refuses the login, or answers 4xx only delays mail: the row backs off
  exponentially (base, doubling, capped) and stays due forever. Only a permanent 5xx refusal of the
  message itself, once it has been tried `max_permanent` times, stops retries (failed_at, last_error).
"""

from __future__ import annotations

import hashlib
import logging
import smtplib
import ssl
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from notifications.models import OutboxMessage
from notifications.outbox import content

log = logging.getLogger(__name__)
TLS_MODES = ("none", "starttls", "ssl")
OUTBOX = OutboxMessage.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class SmtpSettings:
    """Where and how to send (FUNNEL_SMTP_*), handed in so this package never reads engine settings."""

    host: str
    port: int = 25
    tls: str = "none"  # none | starttls | ssl
    user: str | None = None
    password: str | None = None
    sender: str = "funnel@localhost"  # From header; may be "Name <address>"
    timeout: float = 10.0
    local_hostname: str | None = None  # EHLO name; None asks the OS (slow where DNS is)

    def __post_init__(self) -> None:
        if self.tls not in TLS_MODES:
            raise ValueError(f"SMTP tls must be one of {', '.join(TLS_MODES)}, not {self.tls!r}")
        if "@" not in parseaddr(self.sender)[1]:
            raise ValueError(f"SMTP from address {self.sender!r} is not an e-mail address")


@dataclass(frozen=True)
class RetryPolicy:
    """How long a failed message waits: base * 2**(attempts-1), capped; leases outlive a slow batch."""

    base_seconds: float = 30.0
    max_seconds: float = 3600.0
    max_permanent: int = 5
    lease_seconds: float = 600.0

    def delay(self, attempts: int) -> timedelta:
        return timedelta(seconds=min(self.base_seconds * 2 ** max(attempts - 1, 0), self.max_seconds))


@dataclass
class DeliveryResult:
    """What one pass did; `errors` holds one line per failed attempt."""

    claimed: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Claimed:
    id: int
    dedupe_key: str
    kind: str
    ref: str | None
    recipients: list[str]
    template: str | None
    context: dict[str, Any] | None
    subject: str | None
    text: str | None
    html: str | None
    created_at: datetime
    attempts: int


class _Transient(Exception):
    """A failure that is not the message's fault: retry with backoff, forever."""


class _Partial(Exception):
    """Sent, but some recipients were refused: recorded as sent, the refusals kept as last_error."""


class _Unrenderable(Exception):
    """The message's template did not render with its context: permanent, like a 5xx (a fix needs a deploy)."""


SessionSource = Engine | Callable[[], Session]
Recorder = Callable[..., None]  # (row, error or None[, subject sent]): writes one attempt's outcome


def deliver_pending(source: SessionSource, *, settings: SmtpSettings, now: datetime, batch: int = 100,
                    worker_id: str = "sender", retry: RetryPolicy | None = None) -> DeliveryResult:
    """Send the messages due at `now` (at most `batch`), recording each result as soon as it is known."""
    policy = retry or RetryPolicy()
    open_session = (lambda: Session(source)) if isinstance(source, Engine) else source
    token = f"{worker_id}:{uuid.uuid4().hex[:12]}"
    with open_session() as session:
        lease = max(policy.lease_seconds, batch * settings.timeout + 60)  # outlives a batch of slow sends
        rows = _claim(session, now=now, token=token, batch=batch, lease=lease)
        session.commit()
    result = DeliveryResult(claimed=len(rows))
    if not rows:
        return result
    try:
        _send_all(rows, settings=settings, record=lambda row, err, subject=None: _record(
            open_session, row, err, now=now, token=token, policy=policy, result=result, subject=subject))
    finally:
        with open_session() as session:  # whatever was not attempted (an interrupt) is due again now
            session.execute(sa.update(OUTBOX).where(OUTBOX.c.claimed_by == token)
                            .values(claimed_by=None, lease_until=None))
            session.commit()
    return result


def message_id(dedupe_key: str, sender: str) -> str:
    """The same Message-ID for every attempt of one message, so a resend after a crash is recognisable."""
    digest = hashlib.sha256(dedupe_key.encode()).hexdigest()[:40]
    domain = parseaddr(sender)[1].rpartition("@")[2] or "funnel.invalid"
    return f"<funnel.{digest}@{domain}>"


def build_message(row: _Claimed | OutboxMessage, *, sender: str) -> EmailMessage:
    """A multipart/alternative message (plain text first, then HTML) with stable identifying headers.

    A templated row is rendered here (notifications.outbox.content); that raises if the template does not render.
    """
    parts = content(row)
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(row.recipients)
    msg["Subject"] = parts.subject
    msg["Date"] = format_datetime(row.created_at)
    msg["Message-ID"] = message_id(row.dedupe_key, sender)
    msg["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot
    msg["X-Funnel-Kind"] = row.kind
    if row.ref:
        msg["X-Funnel-Ref"] = row.ref
    msg.set_content(parts.text)
    if parts.html:
        msg.add_alternative(parts.html, subtype="html")
    return msg


def _due(now: datetime) -> Any:
    c = OUTBOX.c
    return sa.and_(c.sent_at.is_(None), c.failed_at.is_(None), c.next_attempt_at <= now,
                   sa.or_(c.lease_until.is_(None), c.lease_until < now))


def _claim(session: Session, *, now: datetime, token: str, batch: int, lease: float) -> list[_Claimed]:
    """Lease up to `batch` due rows to `token` in one statement; a cheap read first keeps idle passes write-free."""
    if session.execute(sa.select(OUTBOX.c.id).where(_due(now)).limit(1)).first() is None:
        return []
    due = sa.select(OUTBOX.c.id).where(_due(now)).order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id).limit(batch)
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    session.execute(sa.update(OUTBOX).where(OUTBOX.c.id.in_(due.scalar_subquery()))
                    .values(claimed_by=token, lease_until=now + timedelta(seconds=lease)))
    cols = [OUTBOX.c[name] for name in _Claimed.__dataclass_fields__]
    found = session.execute(sa.select(*cols).where(OUTBOX.c.claimed_by == token).order_by(OUTBOX.c.id))
    return [_Claimed(**dict(m)) for m in found.mappings()]


def _send_all(rows: list[_Claimed], *, settings: SmtpSettings, record: Recorder) -> None:
    """One connection for the batch; reconnect once after it drops; a dead server defers the rest."""
    pending = list(rows)
    while pending:
        try:
            with _connection(settings) as smtp:
                while pending:
                    row = pending[0]
                    try:
                        message = build_message(row, sender=settings.sender)
                    except Exception as err:  # a template bug or a context it cannot use: this message only
                        pending.pop(0)
                        log.exception("outbox %s: template %s does not render", row.dedupe_key, row.template)
                        record(row, _Unrenderable(f"template {row.template!r} does not render: "
                                                  f"{type(err).__name__}: {err}"))
                        continue
                    try:
                        refused = smtp.send_message(message, from_addr=parseaddr(settings.sender)[1],
                                                    to_addrs=row.recipients)
                    except smtplib.SMTPServerDisconnected as err:
                        pending.pop(0)
                        record(row, _Transient(f"connection lost: {err}"))
                        break  # reconnect for the rest
                    except smtplib.SMTPException as err:  # an answer about this message (4xx / 5xx)
                        pending.pop(0)
                        record(row, err)
                        continue
                    except OSError as err:  # SMTPException is an OSError too, hence the order
                        pending.pop(0)
                        record(row, _Transient(f"connection lost: {err}"))
                        break
                    pending.pop(0)
                    record(row, _Partial(refused) if refused else None, str(message["Subject"]))
        except (smtplib.SMTPException, OSError) as err:
            failure = _Transient(f"cannot connect to {settings.host}:{settings.port}: {err}")
            for row in pending:
                record(row, failure)
            return


@contextmanager
def _connection(s: SmtpSettings) -> Iterator[smtplib.SMTP]:
    context = ssl.create_default_context()
    smtp: smtplib.SMTP
    if s.tls == "ssl":
        smtp = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout, context=context, local_hostname=s.local_hostname)
    else:
        smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout, local_hostname=s.local_hostname)
    try:
        if s.tls == "starttls":
            smtp.starttls(context=context)
        if s.user:
            smtp.login(s.user, s.password or "")
        yield smtp
    finally:
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()


def _permanent(err: Exception) -> bool:
    """A 5xx answer about this message (sender, recipients, data): retrying the same bytes will not help."""
    if isinstance(err, _Unrenderable):
        return True
    if isinstance(err, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in err.recipients.values())
    return isinstance(err, smtplib.SMTPResponseException) and err.smtp_code >= 500


def _record(open_session: Callable[[], Session], row: _Claimed, err: Exception | None, *, now: datetime,
            token: str, policy: RetryPolicy, result: DeliveryResult, subject: str | None = None) -> None:
    """Write one attempt's outcome in its own short transaction, and release the lease (and, once sent, the
    subject it went out with, so the delivery record of a templated message says what it was)."""
    c = OUTBOX.c
    attempts = row.attempts + 1
    values: dict[str, Any] = {"attempts": attempts, "claimed_by": None, "lease_until": None}
    if err is None or isinstance(err, _Partial):
        values.update(sent_at=now, next_attempt_at=None, last_error=f"refused: {err}" if err else None)
        if row.subject is None and subject is not None:
            values["subject"] = subject
        stmt = sa.update(OUTBOX).where(c.id == row.id, c.sent_at.is_(None))  # sent, whoever holds it now
        result.sent += 1
        log.info("outbox %s sent to %s", row.dedupe_key, ", ".join(row.recipients))
    else:
        message = f"attempt {attempts}: {type(err).__name__}: {err}"[:2000]
        result.errors.append(f"{row.dedupe_key}: {message}")
        if _permanent(err) and attempts >= policy.max_permanent:
            values.update(failed_at=now, next_attempt_at=None, last_error=message)
            result.failed += 1
            log.error("outbox %s given up: %s", row.dedupe_key, message)
        else:
            values.update(next_attempt_at=now + policy.delay(attempts), last_error=message)
            result.deferred += 1
            log.warning("outbox %s deferred: %s", row.dedupe_key, message)
        stmt = sa.update(OUTBOX).where(c.id == row.id, c.claimed_by == token)
    with open_session() as session:
        session.execute(stmt.values(**values))
        session.commit()

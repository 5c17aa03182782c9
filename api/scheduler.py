"""The background loop: APScheduler interval jobs that only tick; the database decides what is due.

Two jobs (max_instances=1, coalesce=True, so a slow pass is never doubled or queued up):
- `tick` every FUNNEL_TICK_SECONDS: when `engine.ticker.next_due(engine)` says something is due,
  call `engine.ticker.tick(funnel, now=..., worker_id=...)` (which claims due rows, fires them
  through the engine and writes their e-mails to the outbox in the same transaction), and again
  at once while a call fires something (a stream of deadlines is always due again by the time a
  tick ends: asking next_due in between only adds a round trip, ~1.2 ms of a ~15 ms tick in the
  PostgreSQL timers bench); a call that fires nothing ends it. Something due later within the
  job's interval is waited for, so it fires at its time, not up to an interval late; the interval
  bounds only how late a row added meanwhile (by any process) is seen. Idle passes are one read.
- `deliver` every FUNNEL_DELIVERY_SECONDS: assignment alerts into the outbox, then the outbox over SMTP.

Any number of processes may run this (`funnel serve` embeds it; `funnel scheduler` runs it alone):
claiming in the database makes each event fire once. Each worker refreshes its `scheduler_heartbeat`
row from inside the tick job; `ticker_status(engine, now)` is what /health reports.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sized
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from engine.instances import Funnel
from engine.settings import Settings
from notifications.alerts import enqueue_assignment_alerts
from notifications.models import OutboxMessage, SchedulerHeartbeat
from notifications.smtp import DeliveryResult, SmtpSettings, deliver_pending

log = logging.getLogger(__name__)
TickFn = Callable[..., Any]  # engine.ticker.tick(funnel, *, now, worker_id) -> what fired
NextDueFn = Callable[[Engine], datetime | None]  # engine.ticker.next_due(engine)
DeliverFn = Callable[..., DeliveryResult]  # notifications.smtp.deliver_pending
HEARTBEAT_SECONDS = 5.0
STALE_AFTER_SECONDS = 30.0
MAX_ROUNDS = 1000  # per tick pass; the next pass goes on where this one stopped


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def smtp_settings(settings: Settings) -> SmtpSettings | None:
    """SMTP settings from FUNNEL_SMTP_*; None when no host is set (mail then waits in the outbox)."""
    if not settings.smtp_host:
        return None
    return SmtpSettings(host=settings.smtp_host, port=settings.smtp_port, tls=settings.smtp_tls,
                        user=settings.smtp_user, password=settings.smtp_password, sender=settings.smtp_from)


def engine_ticker() -> tuple[TickFn | None, NextDueFn | None]:
    """engine.ticker's tick and next_due, looked up at run time so the loop works before it exists."""
    try:
        module = importlib.import_module("engine.ticker")
    except ModuleNotFoundError:
        log.warning("engine.ticker is not available: SLA timers are not ticked")
        return None, None
    return getattr(module, "tick", None), getattr(module, "next_due", None)


def fired_count(result: Any) -> int:
    """How much one tick call fired: a count, a collection, a {kind: count} map, or an object with total/fired."""
    if result is None or isinstance(result, bool | int):
        return int(result or 0)
    for name in ("total", "fired"):  # engine.ticker.TickResult has both; total includes Spiff timers
        if hasattr(result, name):
            return fired_count(getattr(result, name))
    if isinstance(result, Mapping):
        return sum(fired_count(v) for v in result.values())
    return len(result) if isinstance(result, Sized) else 0


def _accepts(fn: Callable[..., Any], name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


@dataclass
class PassResult:
    """What one pass of both jobs did (`funnel scheduler --once` prints it)."""

    rounds: int = 0
    fired: int = 0
    alerts: int = 0
    delivery: DeliveryResult = field(default_factory=DeliveryResult)

    def summary(self) -> str:
        d = self.delivery
        return (f"fired {self.fired} due event(s) in {self.rounds} tick(s); {self.alerts} alert e-mail(s) "
                f"queued; sent {d.sent}, deferred {d.deferred}, failed {d.failed}")


class ExpectedSkips(logging.Filter):
    """Drops APScheduler's warning that a run was skipped because the job is still running: by design here.

    A tick job goes on while a stream of deadlines keeps it busy, or waits for something due within its interval,
    so the next run often finds it running; max_instances=1 then skips that run. APScheduler warns each time:
    ten lines a second at the default interval under load. Its other warnings still pass.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return "maximum number of running instances" not in record.getMessage()


class Ticker:
    """The two jobs for one worker, usable as a single pass (`run_once`) or on a BackgroundScheduler."""

    def __init__(self, funnel: Funnel, settings: Settings, *, worker_id: str | None = None,
                 tick: TickFn | None = None, next_due: NextDueFn | None = None,
                 deliver: DeliverFn = deliver_pending, smtp: SmtpSettings | None = None,
                 heartbeat_seconds: float = HEARTBEAT_SECONDS) -> None:
        if tick is None:
            tick, found_next_due = engine_ticker()
            next_due = next_due or found_next_due
        self.funnel, self.settings = funnel, settings
        self.worker_id = worker_id or worker_name()
        self.tick, self.next_due, self.deliver = tick, next_due, deliver
        # engine.ticker.tick takes base_url (links in escalation e-mails); plain test fakes need not
        self._tick_extra = {"base_url": settings.base_url} if tick and _accepts(tick, "base_url") else {}
        self.smtp = smtp if smtp is not None else smtp_settings(settings)
        self.heartbeat_seconds = heartbeat_seconds
        self._scheduler: BackgroundScheduler | None = None
        self._last_beat: datetime | None = None
        self._counts = {"ticks": 0, "fired": 0, "sent": 0}  # since the last beat; both job threads add
        self._lock = threading.Lock()
        self._error: str | None = None
        self._started_at = funnel.clock()
        self._stopping = threading.Event()
        # sleeps `seconds` unless stop() is called first (True then); tests swap in one that moves a fake clock
        self.wait: Callable[[float], bool] = self._stopping.wait

    # ------------------------------------------------------------ the jobs

    def tick_job(self) -> int:
        """Fire everything due now and within this job's interval; then beat if it is time."""
        fired = 0
        try:
            fired = self._tick_until_idle(wait_s=self.settings.tick_seconds)[1]
        except Exception as err:  # the scheduler keeps running; the heartbeat shows the error
            log.exception("tick failed")
            self._error = f"tick: {type(err).__name__}: {err}"
        self._count(ticks=1, fired=fired)
        self._beat(force=False)
        return fired

    def delivery_job(self) -> DeliveryResult:
        """Assignment alerts into the outbox, then send what is due (nothing without an SMTP host)."""
        result = DeliveryResult()
        try:
            self._queue_alerts(self.funnel.clock())
            if self.smtp is not None:
                result = self.deliver(self.funnel.engine, settings=self.smtp, now=self.funnel.clock(),
                                      worker_id=self.worker_id)
        except Exception as err:
            log.exception("delivery failed")
            self._error = f"delivery: {type(err).__name__}: {err}"
        self._count(sent=result.sent)
        return result

    def run_once(self) -> PassResult:
        """One pass of both jobs, for `funnel scheduler --once` (cron) and tests; always beats."""
        rounds, fired = self._tick_until_idle()
        alerts = self._queue_alerts(self.funnel.clock())
        delivery = DeliveryResult()
        if self.smtp is not None:
            delivery = self.deliver(self.funnel.engine, settings=self.smtp, now=self.funnel.clock(),
                                    worker_id=self.worker_id)
        self._count(ticks=1, fired=fired, sent=delivery.sent)
        self._beat(force=True)
        return PassResult(rounds, fired, alerts, delivery)

    def _tick_until_idle(self, *, wait_s: float = 0.0) -> tuple[int, int]:
        """Tick while something is due (after a tick that fired, without asking); (ticks, fired).

        `wait_s` > 0: something falling due within that many seconds from now is waited for (stop() ends the
        wait), then fired; later than that is left to the next job.
        """
        if self.tick is None:
            return 0, 0
        rounds = fired = 0
        until = time.monotonic() + wait_s
        busy = False  # the last tick fired something: more is likely due already
        while rounds < MAX_ROUNDS:
            now = self.funnel.clock()
            if self.next_due is not None and not busy:
                due = self.next_due(self.funnel.engine)
                if due is None:
                    break
                if due > now:
                    pause = (due - now).total_seconds()
                    if time.monotonic() + pause > until or self.wait(pause):
                        break  # beyond this job's interval, or stopping
                    continue  # ask again: the clock may not have reached it yet, or another worker took it
            rounds += 1
            count = fired_count(self.tick(self.funnel, now=now, worker_id=self.worker_id, **self._tick_extra))
            fired += count
            if count == 0:
                break
            busy = True
        return rounds, fired

    def _queue_alerts(self, now: datetime) -> int:
        with Session(self.funnel.engine) as session:
            added = enqueue_assignment_alerts(session, now, self.settings.base_url)
            session.commit()
        return added

    # ------------------------------------------------------------ heartbeat

    def _beat(self, *, force: bool, stopped: bool = False) -> None:
        """Write this worker's heartbeat row, at most every heartbeat_seconds unless forced."""
        now = self.funnel.clock()
        last = self._last_beat
        if not force and last is not None and (now - last).total_seconds() < self.heartbeat_seconds:
            return
        counts = self._take_counts()
        try:
            with Session(self.funnel.engine) as session:
                row = session.get(SchedulerHeartbeat, self.worker_id)
                if row is None:
                    row = SchedulerHeartbeat(worker_id=self.worker_id, host=socket.gethostname(), pid=os.getpid(),
                                             started_at=self._started_at, beat_at=now)
                row.beat_at, row.stopped_at = now, (now if stopped else None)
                row.ticks += counts["ticks"]
                row.fired += counts["fired"]
                row.sent += counts["sent"]
                row.last_error = self._error
                session.add(row)
                session.commit()
        except Exception:  # a beat that fails is retried on the next pass; the job must go on
            log.exception("heartbeat failed")
            self._count(**counts)
            return
        self._last_beat, self._error = now, None

    def _count(self, **counts: int) -> None:
        with self._lock:
            for name, n in counts.items():
                self._counts[name] += n

    def _take_counts(self) -> dict[str, int]:
        with self._lock:
            counts, self._counts = self._counts, dict.fromkeys(self._counts, 0)
        return counts

    # ------------------------------------------------------------ running

    def start(self) -> None:
        """Run both jobs on a background thread pool until stop()."""
        if self._scheduler is not None:
            return
        self._stopping.clear()
        logging.getLogger("apscheduler.executors.default").setLevel(logging.WARNING)  # no line per tick
        skips = logging.getLogger("apscheduler.scheduler")
        if not any(isinstance(f, ExpectedSkips) for f in skips.filters):
            skips.addFilter(ExpectedSkips())
        scheduler = BackgroundScheduler(executors={"default": ThreadPoolExecutor(2)}, timezone="UTC",
                                        job_defaults={"max_instances": 1, "coalesce": True,
                                                      "misfire_grace_time": None})
        scheduler.add_job(self.tick_job, "interval", seconds=self.settings.tick_seconds, id="tick")
        scheduler.add_job(self.delivery_job, "interval", seconds=self.settings.delivery_seconds, id="deliver")
        scheduler.start()
        self._scheduler = scheduler
        log.info("ticker %s started: tick every %ss, delivery every %ss%s", self.worker_id,
                 self.settings.tick_seconds, self.settings.delivery_seconds,
                 "" if self.smtp else " (no FUNNEL_SMTP_HOST: e-mails wait in the outbox)")

    def stop(self) -> None:
        """Let running jobs finish, then record that this worker stopped (so /health does not count it)."""
        self._stopping.set()  # a tick job waiting for a due time returns at once
        if self._scheduler is None:
            return
        self._scheduler.shutdown(wait=True)
        self._scheduler = None
        self._beat(force=True, stopped=True)


@contextmanager
def running(ticker: Ticker | None) -> Iterator[Ticker | None]:
    """Run `ticker` in the background for the body (e.g. while uvicorn serves); None runs nothing."""
    if ticker is not None:
        ticker.start()
    try:
        yield ticker
    finally:
        if ticker is not None:
            ticker.stop()


def run_forever(ticker: Ticker, *, stop: threading.Event | None = None) -> None:
    """Tick until SIGINT or SIGTERM (or `stop` is set), then shut down cleanly."""
    stop = stop or threading.Event()
    previous: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _signo, _frame: stop.set())
    try:
        with running(ticker):
            while not stop.wait(1.0):
                pass
    finally:
        for signo, handler in previous.items():
            signal.signal(signo, handler)


def ticker_status(engine: Engine, now: datetime, *, stale_after: float = STALE_AFTER_SECONDS) -> dict[str, Any]:
    """For /health: is any worker ticking (a beat within `stale_after` seconds), and the outbox backlog."""
    unsent = sa.and_(col(OutboxMessage.sent_at).is_(None), col(OutboxMessage.failed_at).is_(None))
    with Session(engine) as session:
        beats = list(session.exec(select(SchedulerHeartbeat).where(
            col(SchedulerHeartbeat.beat_at) >= now - timedelta(days=1)).order_by(col(SchedulerHeartbeat.worker_id))))
        counts = session.exec(select(
            sa.func.count().filter(unsent),
            sa.func.count().filter(unsent, col(OutboxMessage.next_attempt_at) <= now),
            sa.func.count().filter(col(OutboxMessage.failed_at).isnot(None)))).one()
    workers = []
    for b in beats:
        age = (now - b.beat_at).total_seconds()
        workers.append({"worker_id": b.worker_id, "beat_at": b.beat_at.isoformat(), "age_seconds": round(age, 1),
                        "alive": b.stopped_at is None and age <= stale_after, "ticks": b.ticks, "fired": b.fired,
                        "sent": b.sent, "last_error": b.last_error})
    return {"alive": any(w["alive"] for w in workers), "workers": workers,
            "outbox": {"unsent": counts[0], "due": counts[1], "failed": counts[2]}}

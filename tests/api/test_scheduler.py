"""The background loop: ticks until nothing is due, delivers the outbox, beats, shuts down cleanly."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlmodel import Session
from typer.testing import CliRunner

from api import scheduler as background
from api.cli import app
from api.scheduler import PassResult, Ticker, fired_count, ticker_status
from engine.db import make_engine, migrate
from engine.instances import Funnel
from engine.settings import Settings, get_settings
from engine.ticker import TickResult
from notifications import outbox
from notifications.models import SchedulerHeartbeat
from notifications.smtp import DeliveryResult, SmtpSettings
from tests.conftest import FakeClock
from tests.notifications.smtp_server import SmtpServer, smtp_server

__all__ = ["smtp_server"]
runner = CliRunner()


@dataclass
class FakeTimers:
    """Stands in for engine.ticker: due times in memory; tick fires what is due, one per call."""

    due: list[datetime] = field(default_factory=list)
    calls: list[tuple[datetime, str]] = field(default_factory=list)
    polls: int = 0  # next_due calls: one per tick pass
    fail: bool = False

    def tick(self, funnel: Funnel, *, now: datetime, worker_id: str) -> int:
        self.calls.append((now, worker_id))
        if self.fail:
            raise RuntimeError("database went away")
        ready = sorted(d for d in self.due if d <= now)
        if not ready:
            return 0
        self.due.remove(ready[0])
        return 1

    def next_due(self, engine: Any) -> datetime | None:
        self.polls += 1
        return min(self.due, default=None)


@dataclass
class FakeDeliver:
    calls: list[datetime] = field(default_factory=list)

    def __call__(self, engine: Any, *, settings: SmtpSettings, now: datetime, worker_id: str) -> DeliveryResult:
        self.calls.append(now)
        return DeliveryResult(claimed=1, sent=1)


def settings(funnel: Funnel, **overrides: Any) -> Settings:
    values: dict[str, Any] = dict(database_url=str(funnel.engine.url.render_as_string(hide_password=False)),
                                  tick_seconds=0.05, delivery_seconds=0.1, base_url="https://funnel.example")
    return Settings(**{**values, **overrides})


def fake_ticker(funnel: Funnel, timers: FakeTimers, deliver: Any = None, **kw: Any) -> Ticker:
    smtp = SmtpSettings(host="127.0.0.1", port=1) if deliver else None
    return Ticker(funnel, settings(funnel), worker_id="test:1", tick=timers.tick, next_due=timers.next_due,
                  deliver=deliver or FakeDeliver(), smtp=smtp, **kw)


def test_given_events_due_and_not_yet_then_one_pass_fires_every_due_one_and_stops(
        funnel: Funnel, clock: FakeClock) -> None:
    # given two events due (one missed during downtime) and one in the future
    timers = FakeTimers(due=[clock.now - timedelta(hours=3), clock.now, clock.now + timedelta(minutes=5)])
    deliver = FakeDeliver()
    ticker = fake_ticker(funnel, timers, deliver)
    # when
    result = ticker.run_once()
    # then it asked what is due once, ticked while a tick fired something, and stopped at the first that did not
    assert (result.rounds, result.fired, timers.polls) == (3, 2, 1)
    assert timers.due == [clock.now + timedelta(minutes=5)]
    assert timers.calls == [(clock.now, "test:1")] * 3
    assert deliver.calls == [clock.now] and result.delivery.sent == 1
    assert "fired 2 due event(s) in 3 tick(s)" in result.summary()
    # and once the clock passes the last one, the next pass fires it
    clock.advance(minutes=5)
    assert ticker.run_once().fired == 1 and timers.due == []


def test_given_something_due_within_the_jobs_interval_then_the_job_waits_for_it_and_fires_it_at_its_time(
        funnel: Funnel, clock: FakeClock) -> None:
    # given one event due 30 ms from now and a job every 50 ms, whose waits move the fake clock
    timers = FakeTimers(due=[clock.now + timedelta(milliseconds=30)])
    ticker = fake_ticker(funnel, timers)
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        clock.advance(seconds=seconds)
        return False

    ticker.wait = wait
    # when the job runs
    fired = ticker.tick_job()
    # then it waited exactly until the event was due and fired it with that time, in the same run
    assert fired == 1 and waits == [0.03]
    assert timers.calls[0][0] == timers.calls[-1][0] == clock.now


def test_given_something_due_after_the_jobs_interval_then_the_job_leaves_it_to_a_later_run(
        funnel: Funnel, clock: FakeClock) -> None:
    timers = FakeTimers(due=[clock.now + timedelta(seconds=1)])
    ticker = fake_ticker(funnel, timers)
    ticker.wait = lambda seconds: pytest.fail(f"waited {seconds} s")  # type: ignore[assignment]
    assert ticker.tick_job() == 0 and timers.calls == [] and timers.polls == 1


def test_given_a_job_waiting_for_a_due_time_when_the_ticker_stops_then_the_wait_ends_at_once(
        funnel: Funnel, clock: FakeClock) -> None:
    # given a job every 60 s (as APScheduler runs it, on a thread) waiting for an event due in 50 s
    timers = FakeTimers(due=[clock.now + timedelta(seconds=50)])
    ticker = fake_ticker(funnel, timers)
    ticker.settings = settings(funnel, tick_seconds=60)
    job = threading.Thread(target=ticker.tick_job)
    job.start()
    deadline = time.monotonic() + 10
    while timers.polls == 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    # when the ticker stops
    ticker.stop()
    job.join(timeout=5)
    # then the job ended without firing
    assert timers.polls == 1 and not job.is_alive() and timers.calls == []


def test_given_next_due_says_due_but_tick_fires_nothing_then_the_pass_ends(funnel: Funnel, clock: FakeClock) -> None:
    # given a due time the tick cannot fire (another worker holds it)
    timers = FakeTimers(due=[clock.now - timedelta(seconds=1)])
    timers.tick = lambda funnel, *, now, worker_id: 0  # type: ignore[method-assign]
    # then a single round, no busy loop
    assert fake_ticker(funnel, timers).run_once().rounds == 1


def test_given_no_next_due_function_then_tick_is_called_until_it_fires_nothing(
        funnel: Funnel, clock: FakeClock) -> None:
    timers = FakeTimers(due=[clock.now, clock.now])
    ticker = Ticker(funnel, settings(funnel), worker_id="w", tick=timers.tick, next_due=None, smtp=None)
    assert (ticker.run_once().rounds, len(timers.calls)) == (3, 3)


@pytest.mark.parametrize(("result", "count"), [
    (None, 0), (False, 0), (True, 1), (3, 3), (["a", "b"], 2), (PassResult(fired=4), 4), (object(), 0),
    ({"sla_warning": 2, "sla_breach": 1}, 3), (TickResult(fired={"sla_breach": 2}, timers=1), 3)])
def test_whatever_tick_returns_is_read_as_a_count(result: Any, count: int) -> None:
    assert fired_count(result) == count


def test_given_a_pass_then_the_heartbeat_says_alive_until_it_goes_stale_or_stops(
        funnel: Funnel, clock: FakeClock) -> None:
    # given
    ticker = fake_ticker(funnel, FakeTimers(due=[clock.now]))
    assert ticker_status(funnel.engine, clock.now)["alive"] is False
    # when
    ticker.run_once()
    # then
    status = ticker_status(funnel.engine, clock.now)
    assert status["alive"] is True
    [worker] = status["workers"]
    assert (worker["worker_id"], worker["fired"], worker["ticks"], worker["age_seconds"]) == ("test:1", 1, 1, 0)
    assert ticker_status(funnel.engine, clock.now + timedelta(seconds=29))["alive"] is True
    assert ticker_status(funnel.engine, clock.now + timedelta(seconds=31))["alive"] is False
    # and a stopped worker is not alive
    ticker._beat(force=True, stopped=True)
    assert ticker_status(funnel.engine, clock.now)["alive"] is False


def test_given_mail_waiting_then_the_status_counts_the_backlog(funnel: Funnel, clock: FakeClock) -> None:
    with Session(funnel.engine) as session:
        for key, at in (("now", clock.now), ("later", clock.now + timedelta(hours=1))):
            outbox.enqueue(session, dedupe_key=key, to="a@b.example", subject="s", text="t", html=None,
                           created_at=at, kind="test")
        session.commit()
    assert ticker_status(funnel.engine, clock.now)["outbox"] == {"unsent": 2, "due": 1, "failed": 0}


def test_given_a_failing_tick_then_the_job_survives_and_the_heartbeat_shows_the_error(
        funnel: Funnel, clock: FakeClock) -> None:
    timers = FakeTimers(due=[clock.now], fail=True)
    ticker = fake_ticker(funnel, timers)
    assert ticker.tick_job() == 0  # no exception escapes into APScheduler
    with Session(funnel.engine) as session:
        beat = session.get(SchedulerHeartbeat, "test:1")
        assert beat is not None and "database went away" in (beat.last_error or "")
    timers.fail = False
    clock.advance(seconds=10)
    assert ticker.tick_job() == 1
    with Session(funnel.engine) as session:
        beat = session.get(SchedulerHeartbeat, "test:1")
        assert beat is not None and beat.last_error is None and beat.ticks == 2


def test_given_the_scheduler_running_then_both_jobs_run_on_their_intervals_and_stop_cleanly(
        funnel: Funnel, clock: FakeClock) -> None:
    # given
    timers, deliver = FakeTimers(due=[clock.now]), FakeDeliver()
    ticker = fake_ticker(funnel, timers, deliver)
    # when
    with background.running(ticker):
        deadline = time.monotonic() + 10
        while (timers.polls < 4 or len(deliver.calls) < 2) and time.monotonic() < deadline:
            time.sleep(0.02)
    # then the due event fired once (the tick after it found nothing), and idle passes only asked what is due next
    assert timers.polls >= 4 and len(deliver.calls) >= 2
    assert timers.due == [] and len(timers.calls) == 2
    with Session(funnel.engine) as session:
        beat = session.get(SchedulerHeartbeat, "test:1")
        assert beat is not None and beat.stopped_at is not None and beat.fired == 1
    polls = timers.polls
    time.sleep(0.2)
    assert timers.polls == polls  # nothing runs after stop


def test_given_sigterm_then_run_forever_stops_the_jobs_and_returns(funnel: Funnel, clock: FakeClock) -> None:
    timers = FakeTimers()
    ticker = fake_ticker(funnel, timers)
    previous = signal.getsignal(signal.SIGTERM)
    threading.Timer(0.3, os.kill, args=(os.getpid(), signal.SIGTERM)).start()
    started = time.monotonic()
    background.run_forever(ticker)
    assert time.monotonic() - started < 5
    assert timers.polls  # it ticked meanwhile
    assert signal.getsignal(signal.SIGTERM) is previous


def test_given_mail_in_the_outbox_then_a_pass_delivers_it_over_real_smtp(
        funnel: Funnel, clock: FakeClock, smtp_server: SmtpServer) -> None:
    with Session(funnel.engine) as session:
        outbox.enqueue(session, dedupe_key="k1", to="ann@example.com", subject="Hello", text="body", html="<p>b</p>",
                       created_at=clock.now, kind="test")
        session.commit()
    ticker = Ticker(funnel, settings(funnel), worker_id="w", tick=FakeTimers().tick, smtp=smtp_server.settings())
    assert ticker.run_once().delivery.sent == 1
    assert [r.message["Subject"] for r in smtp_server.received] == ["Hello"]


def test_given_no_fakes_then_the_engines_ticker_is_used_with_the_base_url(
        funnel: Funnel, clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    # given the real engine.ticker, watched
    from engine import ticker as engine_ticker

    seen: list[dict[str, Any]] = []
    real_tick = engine_ticker.tick

    def watched(funnel: Funnel, *, now: datetime, worker_id: str, base_url: str | None = None) -> Any:
        seen.append({"now": now, "worker_id": worker_id, "base_url": base_url})
        return real_tick(funnel, now=now, worker_id=worker_id, base_url=base_url)

    monkeypatch.setattr(engine_ticker, "tick", watched)
    monkeypatch.setattr(engine_ticker, "next_due", lambda engine: clock.now)  # force a tick on an idle database
    # when
    result = Ticker(funnel, settings(funnel), worker_id="real", smtp=None).run_once()
    # then
    assert result.fired == 0
    assert seen == [{"now": clock.now, "worker_id": "real", "base_url": "https://funnel.example"}]


def test_given_no_smtp_host_then_mail_waits_in_the_outbox(funnel: Funnel) -> None:
    assert background.smtp_settings(settings(funnel)) is None
    configured = background.smtp_settings(settings(funnel, smtp_host="mail.example", smtp_port=587,
                                                   smtp_tls="starttls", smtp_user="u", smtp_password="p"))
    assert configured == SmtpSettings(host="mail.example", port=587, tls="starttls", user="u", password="p",
                                      sender="funnel@localhost")


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Point the CLI's settings at the test's environment, and forget them afterwards."""
    def apply(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(f"FUNNEL_{name.upper()}", value)
        get_settings.cache_clear()
    yield apply
    get_settings.cache_clear()


def test_funnel_scheduler_once_fires_and_sends_then_exits(
        db_url: str, env: Any, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # given a database with one message waiting, and the timers faked
    engine = make_engine(db_url)
    migrate(engine)
    with Session(engine) as session:
        outbox.enqueue(session, dedupe_key="k", to="ann@example.com", subject="Hi", text="t", html=None,
                       created_at=datetime.now().astimezone(), kind="test")
        session.commit()
    engine.dispose()
    timers = FakeTimers(due=[datetime(2000, 1, 1).astimezone()])
    monkeypatch.setattr(background, "engine_ticker", lambda: (timers.tick, timers.next_due))
    env(database_url=db_url, smtp_host="127.0.0.1", smtp_port=str(smtp_server.port), smtp_from="funnel@funnel.example")
    # when
    result = runner.invoke(app, ["scheduler", "--once"])
    # then
    assert result.exit_code == 0, result.output
    assert "fired 1 due event(s)" in result.output and "sent 1" in result.output
    assert len(smtp_server.received) == 1 and len(timers.calls) == 2  # the second tick found nothing


@pytest.mark.parametrize(("flag", "embedded"), [([], True), (["--no-ticker"], False)])
def test_funnel_serve_runs_the_ticker_beside_the_api_unless_told_not_to(
        tmp_path: Any, env: Any, monkeypatch: pytest.MonkeyPatch, flag: list[str], embedded: bool) -> None:
    import uvicorn
    from fastapi.testclient import TestClient

    from api import serving

    seen: dict[str, Any] = {}
    real_running = background.running

    def spy(ticker: Ticker | None) -> Any:
        seen["ticker"] = ticker
        return real_running(None)

    def fake_run(target: str, **options: Any) -> None:
        seen["served"], seen["options"] = target, options
        with TestClient(serving.served_app()):  # what each worker builds and starts (its lifespan)
            pass

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(background, "running", spy)
    monkeypatch.delenv(serving.TICKER_ENV, raising=False)  # serve sets it for its workers; restored after
    env(database_url=f"sqlite:///{tmp_path / 'f.sqlite3'}")
    result = runner.invoke(app, ["serve", *flag])
    assert result.exit_code == 0, result.output
    assert seen["served"] == serving.FACTORY and seen["options"]["factory"] is True
    assert seen["options"]["workers"] == 1
    assert (seen["ticker"] is not None) is embedded


def test_given_a_tick_slower_than_its_interval_then_the_skipped_runs_are_not_logged_as_warnings(
        funnel: Funnel, clock: FakeClock, caplog: pytest.LogCaptureFixture) -> None:
    # given a tick that takes three of its 50 ms intervals
    timers = FakeTimers(due=[clock.now])
    calls: list[float] = []

    def slow_tick(funnel: Funnel, *, now: datetime, worker_id: str) -> int:
        calls.append(time.monotonic())
        time.sleep(0.15)
        return 0

    ticker = Ticker(funnel, settings(funnel), worker_id="test:1", tick=slow_tick, next_due=timers.next_due, smtp=None)
    # when it runs for a while
    with caplog.at_level(logging.WARNING, logger="apscheduler"), background.running(ticker):
        deadline = time.monotonic() + 10
        while len(calls) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
    # then runs were skipped (by design: one tick at a time) without a warning per skip
    assert len(calls) >= 3
    assert not [r for r in caplog.records if "maximum number of running instances" in r.getMessage()]
    # and APScheduler's other warnings still pass
    logging.getLogger("apscheduler.scheduler").warning("some other trouble")
    assert "some other trouble" in caplog.text

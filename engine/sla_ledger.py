"""An SLA clock is a ledger; this module derives every figure from it, with the one business calendar.

The ledger of a clock is its append-only list of events: start, pause, resume, stop and retarget, each
with the cycle it belongs to (a reopened clock starts cycle 2 and keeps cycle 1 as history). Nothing
here is stored: consumed time, the deadline, the warning instant and "breached?" are computed from the
events each time, so a retarget (tier or priority changed) keeps the consumed time, a pause adds
exactly the paused business time to the deadline, and a breach that happened stays a breach.

Rules (all business time of the clock's calendar, exact to the microsecond):
- consumed = the sum of calendar.elapsed over the running spans of the current cycle;
- the instant a threshold T is reached is calendar.add(span start, T - consumed before that span) in
  the span where the running total reaches T; while paused before reaching T there is none yet;
- the deadline is when the target is reached, the warning when warning * target is; a clock is
  breached once the deadline is at or before the moment it stopped (or now, while it runs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.calendar import BusinessCalendar
from engine.sla_policy import warning_threshold

START, PAUSE, RESUME, STOP, RETARGET = "start", "pause", "resume", "stop", "retarget"
RUNNING, PAUSED, STOPPED = "running", "paused", "stopped"

Span = tuple[datetime, datetime | None]  # [from, to); to None: still running


@dataclass(frozen=True)
class Entry:
    """One ledger event as the derivation needs it."""

    kind: str
    at: datetime
    cycle: int
    target: timedelta | None = None  # start and retarget: the (new) target; None: no deadline


@dataclass(frozen=True)
class Figures:
    """A clock's state at a moment: what reports, queries and e-mails show."""

    status: str  # running | paused | stopped
    cycle: int
    started_at: datetime
    stopped_at: datetime | None
    target: timedelta | None
    consumed: timedelta
    remaining: timedelta | None  # target - consumed; negative: overdue by that much business time
    deadline: datetime | None  # None: no target, or paused before reaching it
    warning_at: datetime | None
    breached: bool


def spans(entries: Sequence[Entry], cycle: int) -> list[Span]:
    """The running spans of one cycle, in order."""
    out: list[Span] = []
    since: datetime | None = None
    for entry in entries:
        if entry.cycle != cycle:
            continue
        if entry.kind in (START, RESUME) and since is None:
            since = entry.at
        elif entry.kind in (PAUSE, STOP) and since is not None:
            out.append((since, entry.at))
            since = None
    if since is not None:
        out.append((since, None))
    return out


def consumed(calendar: BusinessCalendar, running: Sequence[Span], now: datetime) -> timedelta:
    """Business time used by the spans up to `now`."""
    total = timedelta(0)
    for begin, end in running:
        stop = now if end is None or end > now else end
        total += calendar.elapsed(begin, stop)
    return total


def reached(calendar: BusinessCalendar, running: Sequence[Span], threshold: timedelta) -> datetime | None:
    """The instant the running total reaches `threshold` (past or, while running, future); None if not yet."""
    used = timedelta(0)
    for begin, end in running:
        if end is None:
            return calendar.add(begin, threshold - used)
        length = calendar.elapsed(begin, end)
        if used + length >= threshold:
            return calendar.add(begin, threshold - used)
        used += length
    return None


def current_cycle(entries: Sequence[Entry]) -> int:
    return max((e.cycle for e in entries), default=1)


def target_of(entries: Sequence[Entry], cycle: int) -> timedelta | None:
    """The target last set in the cycle (by its start or a later retarget)."""
    target = None
    for entry in entries:
        if entry.cycle == cycle and entry.kind in (START, RETARGET):
            target = entry.target
    return target


def status_of(entries: Sequence[Entry], cycle: int) -> str:
    status = STOPPED
    for entry in entries:
        if entry.cycle != cycle:
            continue
        if entry.kind in (START, RESUME):
            status = RUNNING
        elif entry.kind == PAUSE:
            status = PAUSED
        elif entry.kind == STOP:
            status = STOPPED
    return status


def derive(calendar: BusinessCalendar, entries: Sequence[Entry], *, now: datetime, warning: float,
           cycle: int | None = None) -> Figures:
    """Every figure of one cycle (default: the current one) as at `now`."""
    cycle = cycle or current_cycle(entries)
    mine = [e for e in entries if e.cycle == cycle]
    if not mine:
        raise ValueError(f"the ledger has no events of cycle {cycle}")
    running = spans(entries, cycle)
    status = status_of(entries, cycle)
    stopped_at = next((e.at for e in reversed(mine) if e.kind == STOP), None) if status == STOPPED else None
    used = consumed(calendar, running, stopped_at or now)
    target = target_of(entries, cycle)
    deadline = warning_at = None
    if target is not None:
        deadline = reached(calendar, running, target)
        warning_at = reached(calendar, running, warning_threshold(target, warning))
    end = stopped_at or now
    return Figures(
        status=status, cycle=cycle, started_at=mine[0].at, stopped_at=stopped_at, target=target, consumed=used,
        remaining=None if target is None else target - used, deadline=deadline, warning_at=warning_at,
        breached=deadline is not None and deadline <= end,
    )

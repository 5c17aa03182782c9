"""Business calendars: the one module that turns working hours, holidays and time zones into time.

Deadlines (`add`), elapsed business time (`elapsed`), time left (`remaining`), warning instants
(`when_remaining`) and the text shown in reports (`format_business`) all come from here, from the
same per-day table, so they always agree. Calendars are data: TOML files whose format is described
in `engine.calendar_files` and `workflows/calendars/README.md`.

How time is counted
- Every input must be an aware datetime (a naive one raises ValueError); every output is aware UTC.
  The server's own time zone (TZ) never matters.
- Each local date of the calendar's zone is turned into working intervals of real (UTC) instants,
  half-open [open, close): open at 09:00:00 sharp, closed at 17:00:00 sharp. Arithmetic is exact
  integer microseconds. Days are computed once and cached (lru_cache on (calendar, date)); holidays
  of the `holidays` package are computed lazily per year and cached too.
- add(start, d) is the earliest instant at which `d` working time after `start` has elapsed: a start
  outside hours counts from the next opening, a deadline that uses up a block exactly is that block's
  closing time (Fri 16:00 + 1 h = Fri 17:00, not Mon 09:00); add(x, 0) is x when open, else the next
  opening. elapsed(a, b) counts working time in [a, b); remaining(now, dl) is elapsed(now, dl), or
  minus elapsed(dl, now) when overdue. Hence elapsed(s, add(s, d)) == d, exactly.
- when_remaining(dl, lead) is the earliest instant from which remaining(t, dl) <= lead, so a warning
  status and a scheduled warning agree; it may fall at a closing time (Fri 17:00 for "2 h left" on a
  Mon 11:00 deadline): pass it through next_open() to deliver at the next opening instead.
- Beware Python's aware arithmetic: `dt + timedelta` and `b - a` within ONE zone are wall-clock, not
  real, time across a DST change; convert to UTC first when real time is meant.

Daylight saving time (decided here, for every zone)
- A range means "open while the local wall clock reads a time inside it", measured in real time:
  a 09:00-18:00 day is 9 real hours on a DST change day, and a 00:00-24:00 day is 23 or 25 hours.
- A start or end inside a spring-forward gap (02:30 in Berlin on the last Sunday of March) is the
  instant the clock jumps: "02:00-04:00" that day is 1 real hour, 03:00-04:00 CEST.
- A time that occurs twice (autumn fall-back) opens at its first occurrence and closes at its last:
  "01:00-02:30" on the last Sunday of October in Berlin runs from 01:00 CEST to the second 02:30
  (CET), 2 h 30 min of real time; the repeated hour is worked once and counted once.
- A local date owns the instants from the last time its clocks read 00:00 until the next date's;
  ranges are clipped to that span, so dates never overlap even in zones that change at midnight.

Guards: a calendar never open on any weekday is rejected at load; a search that finds no working
time within ten years raises CalendarError; instants outside the years 1900-2199 raise ValueError.
"""

from __future__ import annotations

import functools
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import holidays

from engine.calendar_files import CalendarSpec, Ranges, parse_calendar_text
from engine.errors import DefinitionError, Problem

__all__ = [
    "BusinessCalendar",
    "CalendarError",
    "format_business",
    "load_calendar",
    "load_calendars",
    "parse_calendar",
]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
US = 1_000_000  # microseconds per second
HORIZON_DAYS = 3653  # ten years: no deadline search walks further
FIRST_YEAR, LAST_YEAR = 1900, 2199


class CalendarError(DefinitionError):
    """A calendar file is wrong, or a calendar cannot answer (no working time within ten years)."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(problems)
        lines = "\n".join(f"  {p}" for p in problems)
        self.message = f"the business calendar has {len(problems)} problem(s):\n{lines}"
        self.args = (self.message,)


@dataclass(frozen=True, slots=True)
class _Day:
    """One local date as UTC microsecond intervals; cum[i] is the working time before interval i."""

    lo: int
    hi: int
    starts: tuple[int, ...]
    ends: tuple[int, ...]
    cum: tuple[int, ...]

    def upto(self, t: int) -> int:
        """Working time of this date before instant t."""
        i = bisect_right(self.ends, t)
        if i < len(self.starts) and self.starts[i] < t:
            return self.cum[i] + t - self.starts[i]
        return self.cum[i]


@dataclass(frozen=True)
class BusinessCalendar:
    """Working hours in a time zone, minus holidays, plus special days; answers in exact UTC instants."""

    name: str
    zone: ZoneInfo
    week: tuple[Ranges, ...]  # seven days, Monday first: ((start minute, end minute), ...)
    make_up_hours: Ranges = ()
    holiday_country: str | None = None
    holiday_subdivision: str | None = None
    make_up_days: bool = False
    extra_holidays: frozenset[date] = frozenset()
    special_days: tuple[tuple[date, Ranges], ...] = ()
    source: str = field(default="", compare=False)
    _special: dict[date, Ranges] = field(init=False, repr=False, compare=False)
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.week) != 7 or not any(self.week):
            raise ValueError("week must have seven days (Monday first) and some working hours")
        object.__setattr__(self, "_special", dict(self.special_days))
        key = (self.name, self.zone.key, self.week, self.make_up_hours, self.holiday_country,
               self.holiday_subdivision, self.make_up_days, self.extra_holidays, self.special_days)
        object.__setattr__(self, "_hash", hash(key))

    def __hash__(self) -> int:
        """Cached, because every cached day lookup hashes the calendar."""
        return self._hash

    def hours_on(self, day: date) -> Ranges:
        """The local working ranges of one date after special days and holidays."""
        if day in self._special:
            return self._special[day]
        if day in self.extra_holidays:
            return ()
        if self.holiday_country:
            closed, make_up = _package_days(self.holiday_country, self.holiday_subdivision, year=day.year)
            if day in closed:
                return ()
            if self.make_up_days and day in make_up:
                return self.make_up_hours
        return self.week[day.weekday()]

    def is_open(self, at: datetime) -> bool:
        """Whether `at` lies inside working hours (opening instant included, closing excluded)."""
        t = _micros(at)
        day = self._locate(at, t)[1]
        i = bisect_right(day.ends, t)
        return i < len(day.ends) and day.starts[i] <= t

    def next_open(self, at: datetime) -> datetime:
        """`at` itself when open, else the next opening; where a clock outside hours resumes."""
        return self.add(at, timedelta(0))

    def add(self, start: datetime, business: timedelta) -> datetime:
        """The deadline: the earliest instant at which `business` working time after `start` has elapsed."""
        t, need = _micros(start), _duration(business)
        ordinal, day = self._locate(start, t)
        for _ in range(HORIZON_DAYS):
            starts, ends = day.starts, day.ends
            if t < day.lo and need > day.cum[-1]:  # a whole day used up: skip its intervals
                need -= day.cum[-1]
            else:
                for i in range(bisect_right(ends, t), len(ends)):
                    begin = starts[i] if starts[i] > t else t
                    if need <= ends[i] - begin:
                        return _instant(begin + need)
                    need -= ends[i] - begin
            ordinal += 1
            day = _day(self, ordinal)
        raise self._beyond_horizon("after", start)

    def elapsed(self, start: datetime, end: datetime) -> timedelta:
        """Working time in [start, end); zero when end is not after start."""
        a, b = _micros(start), _micros(end)
        if b <= a:
            return timedelta(0)
        first, day_a = self._locate(start, a)
        last, day_b = self._locate(end, b)
        total = day_b.upto(b) - day_a.upto(a)
        for ordinal in range(first, last):
            total += _day(self, ordinal).cum[-1]
        return timedelta(microseconds=total)

    def remaining(self, now: datetime, deadline: datetime) -> timedelta:
        """Working time left until `deadline`; negative is the working time it is overdue by."""
        if _micros(deadline) >= _micros(now):
            return self.elapsed(now, deadline)
        return -self.elapsed(deadline, now)

    def when_remaining(self, deadline: datetime, business: timedelta) -> datetime:
        """The earliest instant from which at most `business` working time is left: when a warning is due."""
        t, need = _micros(deadline), _duration(business)
        ordinal, day = self._locate(deadline, t)
        for _ in range(HORIZON_DAYS):
            starts, ends = day.starts, day.ends
            for i in range(bisect_left(starts, t) - 1, -1, -1):
                close = ends[i] if ends[i] < t else t
                if need < close - starts[i]:
                    return _instant(close - need)
                need -= close - starts[i]
            ordinal -= 1
            day = _day(self, ordinal)
        raise self._beyond_horizon("before", deadline)

    def _locate(self, at: datetime, t: int) -> tuple[int, _Day]:
        """The local date owning instant t (its ordinal) and that date's table."""
        ordinal = at.astimezone(self.zone).toordinal()
        day = _day(self, ordinal)
        while t < day.lo:
            ordinal -= 1
            day = _day(self, ordinal)
        while t >= day.hi:
            ordinal += 1
            day = _day(self, ordinal)
        return ordinal, day

    def _beyond_horizon(self, direction: str, at: datetime) -> CalendarError:
        """The error for a search that would otherwise run for ever."""
        message = (f"calendar '{self.name}' has not enough working time within ten years {direction} "
                   f"{at.isoformat()}; check the duration and the calendar's hours and holidays")
        return CalendarError([Problem(file=self.source or self.name, message=message, element="hours")])


def _micros(at: datetime) -> int:
    """Exact microseconds since the epoch of an aware datetime; naive ones are refused loudly."""
    if not isinstance(at, datetime):
        raise TypeError(f"expected an aware datetime, got {type(at).__name__}")
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"naive datetime {at.isoformat()} has no time zone; pass an aware one "
                         "(e.g. datetime(..., tzinfo=UTC)) so the instant is unambiguous")
    if not FIRST_YEAR <= at.year <= LAST_YEAR:
        raise ValueError(f"{at.isoformat()} is outside the supported years {FIRST_YEAR}-{LAST_YEAR}")
    return _delta_micros(at - EPOCH)


def _duration(business: timedelta) -> int:
    """A non-negative duration in microseconds."""
    if not isinstance(business, timedelta):
        raise TypeError(f"expected a timedelta, got {type(business).__name__}")
    if business < timedelta(0):
        raise ValueError(f"business time must not be negative, got {business}")
    return _delta_micros(business)


def _instant(micros: int) -> datetime:
    """Aware UTC datetime for microseconds since the epoch."""
    return EPOCH + timedelta(microseconds=micros)


@functools.lru_cache(maxsize=1 << 15)  # ~90 calendar-years of days, a few MB
def _day(calendar: BusinessCalendar, ordinal: int) -> _Day:
    """The working intervals of one local date, merged and clipped to the instants the date owns."""
    today = date.fromordinal(ordinal)
    zone = calendar.zone
    lo, hi = _wall(zone, today, 0, last=True), _wall(zone, today, 1440, last=True)
    pieces: list[list[int]] = []
    for first, last in calendar.hours_on(today):
        begin = max(lo, _wall(zone, today, first, last=False))
        end = min(hi, _wall(zone, today, last, last=True))
        if begin >= end:
            continue
        if pieces and begin <= pieces[-1][1]:
            pieces[-1][1] = max(pieces[-1][1], end)
        else:
            pieces.append([begin, end])
    cum = [0]
    for begin, end in pieces:
        cum.append(cum[-1] + end - begin)
    starts, ends = tuple(p[0] for p in pieces), tuple(p[1] for p in pieces)
    return _Day(lo=lo, hi=hi, starts=starts, ends=ends, cum=tuple(cum))


def _wall(zone: ZoneInfo, day: date, minute: int, *, last: bool) -> int:
    """The instant a local wall time means: first/last occurrence when repeated, the jump when skipped."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    first = _naive_micros(wall.replace(tzinfo=zone))
    second = _naive_micros(wall.replace(tzinfo=zone, fold=1))
    if first == second:
        return first
    early, late = min(first, second), max(first, second)
    if _instant(first).astimezone(zone).replace(tzinfo=None) == wall:  # exists twice: fall-back overlap
        return late if last else early
    return _transition(zone, early=early, late=late)


def _naive_micros(at: datetime) -> int:
    """Microseconds since the epoch, without the input checks of the public methods."""
    return _delta_micros(at - EPOCH)


def _transition(zone: ZoneInfo, *, early: int, late: int) -> int:
    """The instant in (early, late] at which the zone's UTC offset changes (clocks jump forward)."""
    def offset(second: int) -> timedelta | None:
        return _instant(second * US).astimezone(zone).utcoffset()

    low, high = early // US, -(-late // US)
    before = offset(low)
    while high - low > 1:
        middle = (low + high) // 2
        if offset(middle) == before:
            low = middle
        else:
            high = middle
    return high * US


@functools.lru_cache(maxsize=1024)
def _package_days(country: str, subdivision: str | None, *, year: int) -> tuple[frozenset[date], frozenset[date]]:
    """Public holidays and make-up working days of one year, from the `holidays` package."""
    table = holidays.country_holidays(country, subdiv=subdivision, years=year)
    closed = frozenset(day for day in table if day.year == year)
    make_up = frozenset(day for day in getattr(table, "weekend_workdays", ()) if day.year == year)
    return closed, make_up


def parse_calendar(text: str, *, name: str, source: str = "<string>") -> BusinessCalendar:
    """A calendar from TOML text; what tests and tools use when there is no file."""
    spec, problems = parse_calendar_text(text, source=source)
    if spec is None:
        raise CalendarError(problems)
    return _from_spec(name, spec, source)


def _from_spec(name: str, spec: CalendarSpec, source: str) -> BusinessCalendar:
    """Bind a checked spec to its name and file."""
    return BusinessCalendar(
        name=name, zone=spec.zone, week=spec.week, make_up_hours=spec.make_up_hours,
        holiday_country=spec.holiday_country, holiday_subdivision=spec.holiday_subdivision,
        make_up_days=spec.make_up_days, extra_holidays=spec.extra_holidays,
        special_days=spec.special_days, source=source,
    )


def _read(path: Path) -> tuple[BusinessCalendar | None, list[Problem]]:
    """One file's calendar, or every problem it has."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        return None, [Problem(file=str(path), message=f"cannot read the calendar file: {err}")]
    spec, problems = parse_calendar_text(text, source=str(path))
    return (_from_spec(path.stem, spec, str(path)) if spec else None), problems


def load_calendar(path: Path) -> BusinessCalendar:
    """The calendar in one TOML file, named after the file stem."""
    calendar, problems = _read(Path(path))
    if calendar is None:
        raise CalendarError(problems)
    return calendar


def load_calendars(folder: Path) -> dict[str, BusinessCalendar]:
    """Every `*.toml` calendar in a folder by name; all problems of all files are raised together."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CalendarError([Problem(file=str(folder), message="the calendars folder does not exist")])
    calendars: dict[str, BusinessCalendar] = {}
    problems: list[Problem] = []
    for path in sorted(folder.glob("*.toml")):
        calendar, found = _read(path)
        problems.extend(found)
        if calendar is not None:
            calendars[calendar.name] = calendar
    if problems:
        raise CalendarError(problems)
    return calendars


def format_business(delta: timedelta) -> str:
    """Business time as people read it: "10 h 5 min", "overdue 1 h"; whole minutes, cut toward zero."""
    micros = _delta_micros(delta)
    prefix = "overdue " if micros < 0 else ""
    minutes = abs(micros) // (60 * US)
    if minutes == 0:
        return f"{prefix}< 1 min" if micros else "0 min"
    hours, rest = divmod(minutes, 60)
    parts = ([f"{hours} h"] if hours else []) + ([f"{rest} min"] if rest else [])
    return prefix + " ".join(parts)


def _delta_micros(delta: timedelta) -> int:
    """A timedelta in exact microseconds (sign kept)."""
    return (delta.days * 86_400 + delta.seconds) * US + delta.microseconds

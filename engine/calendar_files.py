"""Reads business-calendar TOML files into plain data, reporting every problem with its file and key.

The file format (one calendar per file; the calendar's name is the file stem):

```toml
zone = "Asia/Shanghai"                # IANA time zone the hours are written in (required)
description = "Head office"           # optional, free text

[hours]                               # per weekday: ordered, non-overlapping "HH:MM-HH:MM" ranges
mon-fri = ["09:00-12:00", "13:00-18:00"]   # keys: mon tue wed thu fri sat sun, or a run "mon-fri"
sat = []                              # a missing or empty day is closed; "24:00" is allowed as an end

[holidays]                            # optional: public holidays from the `holidays` package
country = "CN"                        # ISO 3166 code the package supports
subdivision = "BY"                    # optional: state / province code the package supports
make_up_days = true                   # optional: also open on the package's make-up working days

make_up_hours = ["09:00-18:00"]       # optional: hours of a make-up day (default: first open weekday's)
extra_holidays = ["2026-12-24", 2026-12-31]        # closed all day (strings or TOML dates)
extra_working_days = [                              # open on these dates whatever the weekday / holiday
    "2026-10-10",                                   # with the make-up hours
    {date = "2026-12-24", hours = ["09:00-12:00"]}, # or with hours of its own (e.g. a half day)
]
```

Precedence for a date: `extra_working_days` > `extra_holidays` > package holidays > package make-up
days > the weekday's hours. Ranges may touch ("09:00-12:00", "12:00-13:00") but not overlap; a range
may not cross midnight: split it ("22:00-24:00" on one day, "00:00-06:00" on the next).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays

from engine.errors import Problem

Ranges = tuple[tuple[int, int], ...]  # (start minute, end minute) of the local day, ordered; end <= 1440
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
TOP_KEYS = {"zone", "description", "hours", "holidays", "make_up_hours", "extra_holidays", "extra_working_days"}
HOLIDAY_KEYS = {"country", "subdivision", "make_up_days"}
_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")
_LINE = re.compile(r"at line (\d+)")


@dataclass(frozen=True)
class CalendarSpec:
    """A checked calendar file, ready to become a `BusinessCalendar`."""

    zone: ZoneInfo
    week: tuple[Ranges, ...]  # Monday first
    make_up_hours: Ranges
    holiday_country: str | None
    holiday_subdivision: str | None
    make_up_days: bool
    extra_holidays: frozenset[date]
    special_days: tuple[tuple[date, Ranges], ...]


class _Report:
    """Collects problems for one file so the author sees all of them at once."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[Problem] = []

    def add(self, key: str | None, message: str, *, line: int | None = None) -> None:
        self.problems.append(Problem(file=self.source, message=message, element=key, line=line))


def parse_calendar_text(text: str, *, source: str) -> tuple[CalendarSpec | None, list[Problem]]:
    """Check a calendar document; returns the spec only when there is no problem at all."""
    report = _Report(source)
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = _LINE.search(str(err))
        report.add(None, f"not valid TOML: {err}", line=int(match.group(1)) if match else None)
        return None, report.problems
    for key in sorted(set(doc) - TOP_KEYS):
        report.add(key, f"unknown key '{key}'; allowed: {', '.join(sorted(TOP_KEYS))}")
    zone = _zone(doc.get("zone"), report)
    week = _week(doc.get("hours"), report)
    country, subdivision, make_up_days = _holidays(doc.get("holidays"), report)
    make_up = _make_up_hours(doc, week, report)
    extra = _extra_holidays(doc.get("extra_holidays", []), report)
    special = _special_days(doc.get("extra_working_days", []), make_up, report)
    for day in sorted(extra & special.keys()):
        report.add("extra_working_days", f"{day} is also in extra_holidays; keep it in one list only")
    if not isinstance(doc.get("description", ""), str):
        report.add("description", "must be a string")
    if report.problems or zone is None:
        return None, report.problems
    spec = CalendarSpec(zone=zone, week=week, make_up_hours=make_up, holiday_country=country,
                        holiday_subdivision=subdivision, make_up_days=make_up_days, extra_holidays=extra,
                        special_days=tuple(sorted(special.items())))
    return spec, []


def _zone(value: Any, report: _Report) -> ZoneInfo | None:
    """The IANA zone the hours are written in; a typo here would shift every deadline."""
    if value is None:
        report.add("zone", 'missing; give an IANA time zone such as "Asia/Shanghai" or "UTC"')
        return None
    if not isinstance(value, str):
        report.add("zone", "must be a string such as \"Europe/Berlin\"")
        return None
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        report.add("zone", f"unknown time zone '{value}'; use an IANA name such as \"Europe/Berlin\"")
        return None


def _week(value: Any, report: _Report) -> tuple[Ranges, ...]:
    """Seven days of ranges, Monday first; a calendar that is never open is rejected here."""
    week: list[Ranges | None] = [None] * 7
    if not isinstance(value, dict):
        report.add("hours", 'missing or not a table; add e.g. [hours] mon-fri = ["09:00-17:00"]')
        return ((),) * 7
    for key, ranges in value.items():
        days = _day_keys(key)
        if days is None:
            hint = "unknown day; use mon tue wed thu fri sat sun or a run like mon-fri"
            report.add(f"hours.{key}", hint + _moved(key))
            continue
        parsed = _ranges(ranges, key=f"hours.{key}", report=report)
        for day in days:
            if week[day] is not None:
                report.add(f"hours.{key}", f"{DAYS[day]} is given more than once")
            week[day] = parsed
    result = tuple(ranges or () for ranges in week)
    if not any(result) and not any(p.element and p.element.startswith("hours") for p in report.problems):
        report.add("hours", "no working hours on any weekday; a calendar must be open some of the time")
    return result


def _moved(key: str) -> str:
    """A hint for the classic TOML slip: a top-level key written below a [table] header."""
    if key in TOP_KEYS:
        return f"; to set the top-level '{key}', move it above the first [table] header"
    return ""


def _day_keys(key: str) -> list[int] | None:
    """Weekday indexes for "mon" or a forward run such as "mon-fri"."""
    first, _, last = key.lower().partition("-")
    if first not in DAYS or (last and last not in DAYS):
        return None
    start, end = DAYS.index(first), DAYS.index(last or first)
    return list(range(start, end + 1)) if start <= end else None


def _ranges(value: Any, *, key: str, report: _Report) -> Ranges:
    """Ordered, non-overlapping minute ranges; overlaps are reported, never silently merged."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        report.add(key, 'must be a list of "HH:MM-HH:MM" strings, e.g. ["09:00-12:00", "13:00-18:00"]')
        return ()
    ranges: list[tuple[int, int]] = []
    for text in value:
        parsed = _range(text)
        if isinstance(parsed, str):
            report.add(key, parsed)
        elif ranges and parsed[0] < ranges[-1][1]:
            report.add(key, f"'{text}' overlaps or comes before '{_show(ranges[-1])}'; order the ranges "
                            "and make them not overlap")
        else:
            ranges.append(parsed)
    return tuple(ranges)


def _range(text: str) -> tuple[int, int] | str:
    """One "HH:MM-HH:MM" range in minutes, or the message saying what is wrong with it."""
    match = _RANGE.match(text)
    if not match:
        return f"'{text}' is not a range like \"09:00-17:00\""
    h1, m1, h2, m2 = (int(group) for group in match.groups())
    if h1 > 23 or m1 > 59 or m2 > 59 or h2 > 24 or (h2 == 24 and m2):
        return f"'{text}' has a time that does not exist (00:00 to 23:59, and 24:00 as an end)"
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if end <= start:
        return f"'{text}' ends before it starts; a range may not cross midnight: split it at 24:00"
    return start, end


def _show(pair: tuple[int, int]) -> str:
    """A minute range back in the file's notation, for messages."""
    return "-".join(f"{minute // 60:02d}:{minute % 60:02d}" for minute in pair)


def _holidays(value: Any, report: _Report) -> tuple[str | None, str | None, bool]:
    """Country, subdivision and make-up flag, checked against what the `holidays` package supports."""
    if value is None:
        return None, None, False
    if not isinstance(value, dict):
        report.add("holidays", 'must be a table such as {country = "CN"}')
        return None, None, False
    for key in sorted(set(value) - HOLIDAY_KEYS):
        report.add(f"holidays.{key}", f"unknown key; allowed: {', '.join(sorted(HOLIDAY_KEYS))}{_moved(key)}")
    country, subdivision, make_up = value.get("country"), value.get("subdivision"), value.get("make_up_days", False)
    supported = holidays.list_supported_countries()
    if not isinstance(country, str) or country not in supported:
        report.add("holidays.country", f"unknown country {country!r}; use an ISO 3166 code the holidays "
                                       "package supports, e.g. \"CN\" or \"DE\"")
        return None, None, False
    if subdivision is not None and (not isinstance(subdivision, str) or subdivision not in supported[country]):
        known = ", ".join(supported[country]) or "none"
        report.add("holidays.subdivision", f"unknown subdivision {subdivision!r} for {country}; known: {known}")
    if not isinstance(make_up, bool):
        report.add("holidays.make_up_days", "must be true or false")
    return country, subdivision, make_up is True


def _make_up_hours(doc: dict[str, Any], week: tuple[Ranges, ...], report: _Report) -> Ranges:
    """Hours of a make-up working day: given, or the first open weekday's (Monday's, usually)."""
    if "make_up_hours" in doc:
        return _ranges(doc["make_up_hours"], key="make_up_hours", report=report)
    return next((ranges for ranges in week if ranges), ())


def _date(value: Any) -> date | None:
    """A TOML date or a "YYYY-MM-DD" string; None when it is neither."""
    if isinstance(value, date) and not hasattr(value, "hour"):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            return None
    return None


def _extra_holidays(value: Any, report: _Report) -> frozenset[date]:
    """Dates closed all day on top of the package's holidays."""
    if not isinstance(value, list):
        report.add("extra_holidays", 'must be a list of dates, e.g. ["2026-12-24"]')
        return frozenset()
    days: set[date] = set()
    for index, item in enumerate(value):
        day = _date(item)
        if day is None:
            report.add(f"extra_holidays[{index}]", f"{item!r} is not a date like \"2026-12-24\"")
        elif day in days:
            report.add(f"extra_holidays[{index}]", f"{day} is listed twice")
        else:
            days.add(day)
    return frozenset(days)


def _special_days(value: Any, make_up: Ranges, report: _Report) -> dict[date, Ranges]:
    """Dates with hours of their own: make-up working days, half days, late openings."""
    if not isinstance(value, list):
        report.add("extra_working_days", 'must be a list such as ["2026-10-10", {date = "2026-12-24", '
                                         'hours = ["09:00-12:00"]}]')
        return {}
    special: dict[date, Ranges] = {}
    for index, item in enumerate(value):
        key = f"extra_working_days[{index}]"
        raw_date, hours = (item.get("date"), item.get("hours")) if isinstance(item, dict) else (item, None)
        if isinstance(item, dict) and set(item) - {"date", "hours"}:
            report.add(key, f"unknown key(s) {sorted(set(item) - {'date', 'hours'})}; allowed: date, hours")
        day = _date(raw_date)
        if day is None:
            report.add(key, f"{raw_date!r} is not a date like \"2026-10-10\"")
            continue
        if day in special:
            report.add(key, f"{day} is listed twice")
        special[day] = make_up if hours is None else _ranges(hours, key=f"{key}.hours", report=report)
    return special

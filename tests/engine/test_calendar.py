"""Business calendars: exact deadlines and elapsed time across weekends, holidays, lunch breaks and DST."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.calendar import (
    BusinessCalendar,
    CalendarError,
    format_business,
    load_calendar,
    load_calendars,
    parse_calendar,
)
from engine.errors import DefinitionError

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "workflows" / "calendars"
H = timedelta(hours=1)
BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")

OFFICE = """
zone = "Asia/Shanghai"
extra_holidays = ["2026-11-26"]
[hours]
mon-fri = ["09:00-17:00"]
"""


# ------------------------------------------------------------------ factories


def write_calendar(folder: Path, body: str, *, name: str = "office") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(body, encoding="utf-8")
    return path


def make_calendar(folder: Path, body: str = OFFICE, *, name: str = "office") -> BusinessCalendar:
    return load_calendar(write_calendar(folder, body, name=name))


def at(zone: ZoneInfo, text: str) -> datetime:
    """An aware datetime from local "YYYY-MM-DD HH:MM" in `zone`."""
    return datetime.fromisoformat(text).replace(tzinfo=zone)


def local(calendar: BusinessCalendar, instant: datetime) -> str:
    return instant.astimezone(calendar.zone).strftime("%a %Y-%m-%d %H:%M")


@pytest.fixture
def office(tmp_path: Path) -> BusinessCalendar:
    return make_calendar(tmp_path)


@pytest.fixture(scope="module")
def shipped() -> dict[str, BusinessCalendar]:
    return load_calendars(SHIPPED)


# ------------------------------------------------------------------ deadlines


def test_given_friday_1600_when_adding_8_business_hours_then_deadline_is_monday_1600(office: BusinessCalendar) -> None:
    deadline = office.add(at(SHANGHAI, "2026-11-20 16:00"), 8 * H)
    assert local(office, deadline) == "Mon 2026-11-23 16:00"
    assert deadline.tzinfo is UTC and deadline == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(("start", "hours", "expected"), [
    ("2026-11-23 07:00", 2, "Mon 2026-11-23 11:00"),  # before opening
    ("2026-11-23 18:30", 2, "Tue 2026-11-24 11:00"),  # after closing
    ("2026-11-21 10:00", 1, "Mon 2026-11-23 10:00"),  # on a Saturday
    ("2026-11-26 10:00", 1, "Fri 2026-11-27 10:00"),  # on a holiday
    ("2026-11-25 16:00", 2, "Fri 2026-11-27 10:00"),  # a holiday inside the window
    ("2026-11-20 16:00", 1, "Fri 2026-11-20 17:00"),  # using a block up exactly ends at its closing
    ("2026-11-23 09:00", 40, "Mon 2026-11-30 17:00"),  # a week of work across a weekend and a holiday
])
def test_given_a_start_when_adding_business_time_then_closed_time_is_skipped(
    office: BusinessCalendar, start: str, hours: int, expected: str
) -> None:
    assert local(office, office.add(at(SHANGHAI, start), hours * H)) == expected


def test_given_zero_business_time_when_adding_then_open_start_stays_and_closed_start_moves_to_opening(
    office: BusinessCalendar,
) -> None:
    open_start = at(SHANGHAI, "2026-11-23 10:15")
    assert office.add(open_start, timedelta(0)) == open_start
    assert local(office, office.add(at(SHANGHAI, "2026-11-20 17:00"), timedelta(0))) == "Mon 2026-11-23 09:00"


def test_given_opening_and_closing_instants_when_asking_is_open_then_opening_is_in_and_closing_is_out(
    office: BusinessCalendar,
) -> None:
    assert office.is_open(at(SHANGHAI, "2026-11-23 09:00"))
    assert not office.is_open(at(SHANGHAI, "2026-11-23 17:00"))
    assert not office.is_open(at(SHANGHAI, "2026-11-26 10:00"))  # holiday
    assert office.next_open(at(SHANGHAI, "2026-11-25 17:00")) == at(SHANGHAI, "2026-11-27 09:00")
    assert office.next_open(at(SHANGHAI, "2026-11-23 12:00")) == at(SHANGHAI, "2026-11-23 12:00")


def test_given_the_shipped_default_calendar_when_lunch_is_inside_the_window_then_it_is_not_counted(
    shipped: dict[str, BusinessCalendar],
) -> None:
    default = shipped["default"]
    assert local(default, default.add(at(SHANGHAI, "2026-11-23 11:00"), 2 * H)) == "Mon 2026-11-23 14:00"
    assert default.elapsed(at(SHANGHAI, "2026-11-23 11:30"), at(SHANGHAI, "2026-11-23 13:30")) == H
    assert not default.is_open(at(SHANGHAI, "2026-11-23 12:30"))


def test_given_chinas_national_day_week_when_adding_then_the_whole_golden_week_is_skipped(
    shipped: dict[str, BusinessCalendar],
) -> None:
    default = shipped["default"]
    deadline = default.add(at(SHANGHAI, "2026-09-30 17:00"), 2 * H)
    assert local(default, deadline) == "Thu 2026-10-08 10:00"


def test_given_a_make_up_working_saturday_when_adding_then_the_saturday_counts(
    shipped: dict[str, BusinessCalendar],
) -> None:
    default = shipped["default"]
    assert default.is_open(at(SHANGHAI, "2026-10-10 10:00"))
    assert local(default, default.add(at(SHANGHAI, "2026-10-09 17:00"), 2 * H)) == "Sat 2026-10-10 10:00"
    assert not default.is_open(at(SHANGHAI, "2026-10-17 10:00"))  # an ordinary Saturday


def test_given_special_days_in_a_file_when_loading_then_make_up_and_half_days_get_their_hours(tmp_path: Path) -> None:
    calendar = make_calendar(tmp_path, """
zone = "Asia/Shanghai"
extra_working_days = ["2026-11-28", {date = "2026-12-24", hours = ["09:00-12:00"]}]
[hours]
mon-fri = ["09:00-17:00"]
[holidays]
country = "DE"
""")
    assert calendar.hours_on(date(2026, 11, 28)) == ((540, 1020),)  # a Saturday, with Monday's hours
    assert calendar.hours_on(date(2026, 12, 24)) == ((540, 720),)  # a half day
    assert calendar.hours_on(date(2026, 12, 25)) == ()  # German Christmas Day, from the package
    assert local(calendar, calendar.add(at(SHANGHAI, "2026-12-24 11:00"), 2 * H)) == "Mon 2026-12-28 10:00"


# ------------------------------------------------------------------ elapsed, remaining, warnings


def test_given_two_instants_when_measuring_elapsed_then_only_working_time_counts(office: BusinessCalendar) -> None:
    assert office.elapsed(at(SHANGHAI, "2026-11-20 16:00"), at(SHANGHAI, "2026-11-23 16:00")) == 8 * H
    assert office.elapsed(at(SHANGHAI, "2026-11-23 16:00"), at(SHANGHAI, "2026-11-20 16:00")) == timedelta(0)
    assert office.elapsed(at(SHANGHAI, "2026-11-25 12:00"), at(SHANGHAI, "2026-11-27 12:00")) == 8 * H


def test_given_a_missed_deadline_when_asking_remaining_then_it_is_negative_and_reads_overdue(
    office: BusinessCalendar,
) -> None:
    deadline = at(SHANGHAI, "2026-11-20 16:00")
    assert office.remaining(at(SHANGHAI, "2026-11-20 12:00"), deadline) == 4 * H
    late = office.remaining(at(SHANGHAI, "2026-11-23 10:30"), deadline)
    assert late == -(2 * H + timedelta(minutes=30))
    assert format_business(late) == "overdue 2 h 30 min"


def test_given_a_deadline_when_asking_when_one_hour_remains_then_the_warning_instant_agrees_with_remaining(
    office: BusinessCalendar,
) -> None:
    deadline = at(SHANGHAI, "2026-11-23 11:00")
    assert local(office, office.when_remaining(deadline, H)) == "Mon 2026-11-23 10:00"
    warning = office.when_remaining(deadline, 2 * H)
    assert local(office, warning) == "Fri 2026-11-20 17:00"  # from Friday's close only 2 h are left
    assert office.remaining(warning, deadline) == 2 * H
    assert office.remaining(warning - timedelta(microseconds=1), deadline) > 2 * H


# ------------------------------------------------------------------ daylight saving time


def test_given_europe_and_a_spring_dst_weekend_when_adding_then_local_hours_are_kept(
    shipped: dict[str, BusinessCalendar],
) -> None:
    europe = shipped["europe"]
    start = at(BERLIN, "2026-03-27 16:00")
    deadline = europe.add(start, 9 * H)
    assert local(europe, deadline) == "Mon 2026-03-30 16:00"
    assert deadline - start == 71 * H  # the weekend lost an hour of real time, the office did not
    assert europe.elapsed(start, deadline) == 9 * H


def test_given_europe_and_an_autumn_dst_weekend_when_adding_then_local_hours_are_kept(
    shipped: dict[str, BusinessCalendar],
) -> None:
    europe = shipped["europe"]
    start = at(BERLIN, "2026-10-23 16:00")
    deadline = europe.add(start, 9 * H)
    assert local(europe, deadline) == "Mon 2026-10-26 16:00"
    assert deadline == datetime(2026, 10, 26, 15, 0, tzinfo=UTC)
    assert deadline - start == 73 * H


@pytest.mark.parametrize(("day", "hours", "real"), [
    ("2026-03-29", "09:00-18:00", 9 * H),  # spring change day: an office day keeps its length
    ("2026-10-25", "09:00-18:00", 9 * H),
    ("2026-03-29", "00:00-24:00", 23 * H),  # the whole day is as long as the day really is
    ("2026-10-25", "00:00-24:00", 25 * H),
    ("2026-03-29", "02:00-04:00", 1 * H),  # 02:00 does not exist: open when the clock jumps to 03:00
    ("2026-03-29", "02:30-02:45", timedelta(0)),  # entirely inside the gap: never open
    ("2026-10-25", "01:00-02:30", 2.5 * H),  # first 01:00 to the last 02:30, the repeated hour once
    ("2026-10-25", "02:30-04:00", 2.5 * H),  # the first 02:30 to 04:00 CET
])
def test_given_a_range_on_a_dst_change_day_when_measuring_then_real_time_is_counted_once(
    tmp_path: Path, day: str, hours: str, real: timedelta
) -> None:
    calendar = make_calendar(tmp_path, f'zone = "Europe/Berlin"\n[hours]\nsun = ["{hours}"]\nmon = ["09:00-10:00"]\n')
    start, end = at(BERLIN, f"{day} 00:00"), at(BERLIN, f"{day} 00:00") + 30 * H
    assert calendar.elapsed(start, end) == real
    if real:
        opening = calendar.next_open(start)
        assert calendar.add(opening, real) - opening == real


def test_given_a_24x7_calendar_in_a_zone_changing_at_midnight_when_measuring_then_it_equals_wall_time(
    tmp_path: Path,
) -> None:
    santiago = ZoneInfo("America/Santiago")
    calendar = make_calendar(tmp_path, 'zone = "America/Santiago"\n[hours]\nmon-sun = ["00:00-24:00"]\n')
    for start in (datetime(2026, 4, 3, tzinfo=santiago), datetime(2026, 9, 4, tzinfo=santiago)):
        end = start.astimezone(UTC) + timedelta(days=4)  # real time: aware arithmetic in one zone is wall time
        assert calendar.elapsed(start, end) == end - start
        assert calendar.add(start, end - start) == end


@pytest.fixture
def server_zone(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Moves the server's own time zone (TZ + tzset) away from every calendar's, and restores it."""
    def move(zone: str) -> None:
        monkeypatch.setenv("TZ", zone)
        time.tzset()

    yield move
    monkeypatch.undo()
    time.tzset()


def test_given_a_server_in_another_time_zone_when_computing_then_results_do_not_change(
    shipped: dict[str, BusinessCalendar], server_zone: Callable[[str], None]
) -> None:
    starts = [at(BERLIN, "2026-03-27 16:00"), at(SHANGHAI, "2026-10-09 17:30"), datetime(2026, 10, 24, 23, tzinfo=UTC)]

    def results() -> list[tuple[datetime, timedelta, bool]]:
        return [(cal.add(s, 11 * H), cal.elapsed(s, s + 100 * H), cal.is_open(s))
                for cal in shipped.values() for s in starts]

    server_zone("UTC")
    before = results()
    for zone in ("America/Los_Angeles", "Pacific/Kiritimati"):
        server_zone(zone)
        assert time.localtime(0).tm_zone != "UTC"
        assert results() == before


# ------------------------------------------------------------------ input checks and guards


def test_given_a_naive_datetime_when_calling_any_method_then_value_error_names_the_problem(
    office: BusinessCalendar,
) -> None:
    naive = datetime(2026, 11, 23, 9, 0)
    aware = naive.replace(tzinfo=UTC)
    calls = [lambda: office.add(naive, H), lambda: office.elapsed(aware, naive), lambda: office.is_open(naive),
             lambda: office.remaining(naive, aware), lambda: office.next_open(naive)]
    for call in calls:
        with pytest.raises(ValueError, match="naive datetime"):
            call()


def test_given_a_negative_duration_when_adding_then_value_error(office: BusinessCalendar) -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        office.add(datetime(2026, 11, 23, tzinfo=UTC), -H)


def test_given_a_duration_beyond_ten_years_when_adding_then_calendar_error_instead_of_endless_search(
    office: BusinessCalendar,
) -> None:
    with pytest.raises(CalendarError, match="within ten years"):
        office.add(datetime(2026, 11, 23, tzinfo=UTC), 100_000 * H)


# ------------------------------------------------------------------ files


def test_given_the_shipped_folder_when_loading_then_every_calendar_loads_with_its_zone(
    shipped: dict[str, BusinessCalendar],
) -> None:
    assert {name: cal.zone.key for name, cal in shipped.items()} == {
        "always": "UTC", "default": "Asia/Shanghai", "europe": "Europe/Berlin"}
    assert shipped["default"].hours_on(date(2026, 10, 1)) == ()
    assert shipped["europe"].hours_on(date(2026, 1, 6)) == ()  # Epiphany, a Bavarian holiday
    always = shipped["always"]
    start = datetime(2026, 3, 28, 22, 17, tzinfo=UTC)
    assert always.add(start, 50 * H) == start + 50 * H


@pytest.mark.parametrize(("body", "key", "words"), [
    ('zone = "UTC"\n[hours]\nmon = ["09:00-12:00", "11:00-13:00"]\n', "hours.mon", "overlaps"),
    ('zone = "UTC"\n[hours]\nmon = ["13:00-18:00", "09:00-12:00"]\n', "hours.mon", "order the ranges"),
    ('zone = "UTC"\n[hours]\ntue = ["09:00-25:00"]\n', "hours.tue", "does not exist"),
    ('zone = "UTC"\n[hours]\ntue = ["9 to 5"]\n', "hours.tue", "not a range"),
    ('zone = "UTC"\n[hours]\nfri = ["22:00-06:00"]\n', "hours.fri", "cross midnight"),
    ('zone = "UTC"\n[hours]\nfunday = ["09:00-17:00"]\n', "hours.funday", "unknown day"),
    ('zone = "Mars/Olympus"\n[hours]\nmon = ["09:00-17:00"]\n', "zone", "unknown time zone"),
    ('[hours]\nmon = ["09:00-17:00"]\n', "zone", "missing"),
    ('zone = "UTC"\n[hours]\nmon = ["09:00-17:00"]\n[holidays]\ncountry = "XX"\n', "holidays.country",
     "unknown country"),
    ('zone = "UTC"\n[hours]\nmon = ["09:00-17:00"]\n[holidays]\ncountry = "DE"\nsubdivision = "ZZ"\n',
     "holidays.subdivision", "unknown subdivision"),
    ('zone = "UTC"\n[hours]\nsat = []\n', "hours", "no working hours"),
    ('zone = "UTC"\n', "hours", "missing"),
    ('zone = "UTC"\nextra_holidays = ["2026-02-30"]\n[hours]\nmon = ["09:00-17:00"]\n', "extra_holidays[0]",
     "not a date"),
    ('zone = "UTC"\nextra_holidays = ["2026-12-24"]\nextra_working_days = ["2026-12-24"]\n[hours]\n'
     'mon = ["09:00-17:00"]\n', "extra_working_days", "also in extra_holidays"),
    ('zone = "UTC"\n[hours]\nmon = ["09:00-17:00"]\nextra_holidays = ["2026-12-24"]\n', "hours.extra_holidays",
     "move it above"),
    ('zone = "UTC"\ntimezone = "UTC"\n[hours]\nmon = ["09:00-17:00"]\n', "timezone", "unknown key"),
])
def test_given_a_malformed_file_when_loading_then_the_error_names_file_and_key(
    tmp_path: Path, body: str, key: str, words: str
) -> None:
    path = write_calendar(tmp_path, body, name="broken")
    with pytest.raises(CalendarError) as caught:
        load_calendar(path)
    problem = next(p for p in caught.value.problems if p.element == key)
    assert problem.file == str(path)
    assert words in problem.message
    assert f"broken.toml [{key}]" in str(caught.value)
    assert isinstance(caught.value, DefinitionError)


def test_given_bad_toml_when_loading_then_the_error_has_the_line(tmp_path: Path) -> None:
    path = write_calendar(tmp_path, 'zone = "UTC"\n[hours\nmon = []\n')
    with pytest.raises(CalendarError) as caught:
        load_calendar(path)
    assert caught.value.problems[0].line == 2
    assert "not valid TOML" in caught.value.problems[0].message


def test_given_a_folder_with_several_broken_files_when_loading_then_every_problem_is_reported_together(
    tmp_path: Path,
) -> None:
    write_calendar(tmp_path, OFFICE, name="good")
    write_calendar(tmp_path, 'zone = "Nowhere/Land"\n[hours]\nmon = ["09:00-17:00"]\n', name="bad_zone")
    write_calendar(tmp_path, 'zone = "UTC"\n[hours]\nmon = ["10:00-09:00"]\nsat = ["x"]\n', name="bad_hours")
    with pytest.raises(CalendarError) as caught:
        load_calendars(tmp_path)
    found = {(Path(p.file).name, p.element) for p in caught.value.problems}
    assert found == {("bad_zone.toml", "zone"), ("bad_hours.toml", "hours.mon"), ("bad_hours.toml", "hours.sat")}


def test_given_calendar_text_when_parsing_without_a_file_then_the_name_is_given() -> None:
    calendar = parse_calendar('zone = "UTC"\n[hours]\nmon-fri = ["08:00-12:00", "12:00-16:00"]\n', name="x")
    assert calendar.name == "x"
    start = datetime(2026, 11, 23, 11, tzinfo=UTC)
    assert calendar.add(start, 2 * H) == start + 2 * H  # touching ranges make one block


# ------------------------------------------------------------------ formatting


@pytest.mark.parametrize(("delta", "text"), [
    (timedelta(hours=2, minutes=30), "2 h 30 min"),
    (timedelta(hours=10, minutes=5), "10 h 5 min"),
    (timedelta(hours=26), "26 h"),
    (timedelta(minutes=45), "45 min"),
    (timedelta(minutes=45, seconds=59), "45 min"),
    (timedelta(0), "0 min"),
    (timedelta(seconds=20), "< 1 min"),
    (-H, "overdue 1 h"),
    (-timedelta(hours=1, minutes=1), "overdue 1 h 1 min"),
    (-timedelta(seconds=1), "overdue < 1 min"),
])
def test_given_business_time_when_formatting_then_hours_and_minutes_are_shown(delta: timedelta, text: str) -> None:
    assert format_business(delta) == text


# ------------------------------------------------------------------ properties

PROPERTY_CALENDARS = {
    "office": OFFICE,
    "default": (SHIPPED / "default.toml").read_text(encoding="utf-8"),
    "europe": (SHIPPED / "europe.toml").read_text(encoding="utf-8"),
    "night_shift_berlin": 'zone = "Europe/Berlin"\n[hours]\nmon-fri = ["00:00-02:30", "22:00-24:00"]\n'
                          'sun = ["01:30-03:30"]\n',
    "lord_howe": 'zone = "Australia/Lord_Howe"\n[hours]\nmon-sun = ["00:00-01:45", "01:45-02:15", "07:59-08:01"]\n',
}
CALENDARS = {name: parse_calendar(body, name=name) for name, body in PROPERTY_CALENDARS.items()}
ZONES = [UTC, SHANGHAI, BERLIN, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe")]
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

calendars = st.sampled_from(sorted(CALENDARS)).map(CALENDARS.__getitem__)
instants = st.datetimes(min_value=datetime(2024, 1, 1), max_value=datetime(2028, 12, 31),
                        timezones=st.sampled_from(ZONES))
durations = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=20))


@PROPERTY
@given(calendars, instants, durations)
def test_property_elapsed_undoes_add_and_remaining_agrees(cal: BusinessCalendar, start: datetime, d: timedelta) -> None:
    deadline = cal.add(start, d)
    assert deadline.tzinfo is UTC
    assert cal.elapsed(start, deadline) == d
    assert cal.remaining(start, deadline) == d


@PROPERTY
@given(calendars, instants, durations, durations)
def test_property_add_is_monotonic(cal: BusinessCalendar, start: datetime, d1: timedelta, d2: timedelta) -> None:
    low, high = sorted((d1, d2))
    assert start <= cal.add(start, low) <= cal.add(start, high)


@PROPERTY
@given(calendars, instants, durations, durations)
def test_property_elapsed_is_additive_and_never_exceeds_real_time(
    cal: BusinessCalendar, a: datetime, d1: timedelta, d2: timedelta
) -> None:
    b = a.astimezone(UTC) + d1  # real time; b and c stay in UTC, a keeps its random zone
    c = b + d2
    assert cal.elapsed(a, b) + cal.elapsed(b, c) == cal.elapsed(a, c)
    assert cal.elapsed(a, c) <= c - a
    assert cal.remaining(c, a) == -cal.elapsed(a, c)


@PROPERTY
@given(calendars, instants, durations)
def test_property_warning_instant_leaves_exactly_the_lead(cal: BusinessCalendar, deadline: datetime,
                                                          lead: timedelta) -> None:
    warning = cal.when_remaining(deadline, lead)
    assert cal.remaining(warning, deadline) == lead
    assert cal.remaining(warning - timedelta(microseconds=1), deadline) > lead


@PROPERTY
@given(instants, durations)
def test_property_the_always_calendar_counts_wall_time(start: datetime, d: timedelta) -> None:
    always = load_calendar(SHIPPED / "always.toml")
    end = start.astimezone(UTC) + d
    assert always.add(start, d) == end
    assert always.elapsed(start, end) == d

"""The aware-UTC column type (notifications.models.UTCDateTime): exact, zone-safe, integers on SQLite."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.dialects import postgresql, sqlite

from notifications.models import UTCDateTime

SQLITE, POSTGRES = sqlite.dialect(), postgresql.dialect()
aware = st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1),
                     timezones=st.sampled_from([UTC, timezone(timedelta(hours=8)), timezone(timedelta(hours=-5))]))


@given(moment=aware)
def test_given_any_aware_moment_when_stored_on_sqlite_then_it_is_an_integer_and_reads_back_exactly_in_utc(
        moment: datetime) -> None:
    # when
    stored = UTCDateTime().process_bind_param(moment, SQLITE)
    back = UTCDateTime().process_result_value(stored, SQLITE)
    # then
    assert isinstance(stored, int)
    assert back == moment and back is not None and back.tzinfo is UTC


@given(a=aware, b=aware)
def test_given_two_moments_then_their_stored_integers_order_as_the_moments_do(a: datetime, b: datetime) -> None:
    # given / when
    x, y = (UTCDateTime().process_bind_param(m, SQLITE) for m in (a, b))
    # then SQL comparisons and indexes on SQLite see the same order as Python
    assert isinstance(x, int) and isinstance(y, int)
    assert (x < y) == (a < b) and (x == y) == (a == b)


def test_given_text_written_before_0017_then_it_still_reads_as_the_same_aware_moment() -> None:
    # given SQLAlchemy's own SQLite text, as rows held it before the migration
    legacy = "2026-11-23 15:18:34.071173"
    # when / then
    assert UTCDateTime().process_result_value(legacy, SQLITE) == datetime(2026, 11, 23, 15, 18, 34, 71173, tzinfo=UTC)


def test_given_postgresql_then_the_moment_is_handed_to_the_driver_as_an_aware_utc_datetime() -> None:
    moment = datetime(2026, 11, 23, 23, 30, tzinfo=timezone(timedelta(hours=8)))
    stored = UTCDateTime().process_bind_param(moment, POSTGRES)
    assert stored == moment and isinstance(stored, datetime) and stored.tzinfo is UTC


@pytest.mark.parametrize(("value", "error", "message"), [
    (datetime(2026, 11, 23, 9, 0), ValueError, "naive datetime"),
    ("2026-11-23 09:00", TypeError, "takes a datetime, not str"),
    (1795447117, TypeError, "takes a datetime, not int"),
])
def test_given_a_value_that_is_not_an_aware_datetime_then_it_is_refused_saying_what_to_pass(
        value: object, error: type[Exception], message: str) -> None:
    for dialect in (SQLITE, POSTGRES):
        with pytest.raises(error, match=message):
            UTCDateTime().process_bind_param(value, dialect)  # type: ignore[arg-type]

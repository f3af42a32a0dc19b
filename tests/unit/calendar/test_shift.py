"""Moving along a calendar: shift, next, prev, after, before, and their laws."""

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apsis.calendar import get_calendar


def test_shift_next_prev_on_weekdays():
    cal = get_calendar("Mon-Fri")
    assert cal.shift("2026-11-27", 1) == "2026-11-30"  # Fri → Mon
    assert cal.shift("2026-11-30", -1) == "2026-11-27"
    assert cal.shift("2026-11-23", 10) == "2026-12-07"
    assert cal.shift("2026-11-25", 0) == "2026-11-25"
    assert cal.next("2026-11-28") == "2026-11-30"
    assert cal.prev("2026-11-28") == "2026-11-27"
    assert cal.next("2026-11-27") == "2026-11-27"


def test_shift_from_a_non_member_snaps_in_the_direction_of_travel():
    cal = get_calendar("Mon-Fri")
    assert cal.shift("2026-11-28", 1) == "2026-11-30"  # Sat +1 → Mon
    assert cal.shift("2026-11-28", -1) == "2026-11-27"  # Sat -1 → Fri
    assert cal.shift("2026-11-28", 2) == "2026-12-01"


def test_after_and_before_are_strict():
    nyse = get_calendar("market:NYSE")
    assert nyse.after("2026-11-25") == "2026-11-27"  # skips Thanksgiving
    assert nyse.before("2026-11-27") == "2026-11-25"
    assert nyse.after("2026-11-28") == "2026-11-30"
    assert nyse.before("2026-11-30") == "2026-11-27"


def test_shift_over_holidays():
    nyse = get_calendar("market:NYSE")
    assert nyse.shift("2026-11-27", -1) == "2026-11-25"
    assert nyse.shift("2026-12-24", 1) == "2026-12-28"


def test_dates_accepted_as_date_objects():
    cal = get_calendar("Mon-Fri")
    assert cal.shift(dt.date(2026, 11, 27), 1) == "2026-11-30"
    assert cal.contains(dt.date(2026, 11, 27))
    assert "2026-11-27" in cal


def test_bad_date_is_a_value_error():
    with pytest.raises(ValueError, match="not a date"):
        get_calendar("Mon-Fri").shift("27/11/2026", 1)


def test_empty_calendar_fails_loudly():
    from apsis.calendar import BusinessCalendar

    never = BusinessCalendar("never", frozenset())
    with pytest.raises(ValueError, match="no date within"):
        never.next("2026-01-01")


CALENDARS = ["Mon-Fri", "market:NYSE", "holidays:GB", "Mon,Wed,Fri", "holidays:US:NY"]
dates = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2060, 12, 31))


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(CALENDARS), start=dates, n=st.integers(-30, 30))
def test_shift_is_invertible_on_members(name, start, n):
    cal = get_calendar(name)
    day = cal.next_date(start)
    assert cal.shift(cal.shift(day, n), -n) == day.isoformat()


@settings(max_examples=300, deadline=None)
@given(name=st.sampled_from(CALENDARS), start=dates)
def test_next_and_prev_land_on_members(name, start):
    cal = get_calendar(name)
    nxt, prv = cal.next_date(start), cal.prev_date(start)
    assert nxt >= start and cal.contains_date(nxt)
    assert prv <= start and cal.contains_date(prv)
    if cal.contains_date(start):
        assert nxt == prv == start
    else:  # nothing in the calendar lies between them
        assert not any(cal.contains_date(prv + dt.timedelta(days=i)) for i in range(1, (nxt - prv).days))
    after = dt.date.fromisoformat(cal.after(start))
    assert after > start and cal.contains_date(after)


@settings(max_examples=200, deadline=None)
@given(name=st.sampled_from(CALENDARS), start=dates, n=st.integers(1, 30))
def test_shift_counts_members(name, start, n):
    cal = get_calendar(name)
    day = cal.next_date(start)
    end = cal.shift_date(day, n)
    between = sum(cal.contains_date(day + dt.timedelta(days=i)) for i in range(1, (end - day).days + 1))
    assert between == n

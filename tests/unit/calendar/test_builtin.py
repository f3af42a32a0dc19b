"""Built-in calendars by name: weekday sets, holidays, markets, and their errors."""

import datetime as dt

import pytest

from apsis.calendar import Calendar, CalendarResolver, get_calendar, market_codes
from apsis.calendar.weekdays import parse_weekdays


def days(cal: Calendar, start: str, n: int) -> list[bool]:
    first = dt.date.fromisoformat(start)
    return [cal.contains_date(first + dt.timedelta(days=i)) for i in range(n)]


# 2026-11-23 is a Monday.
@pytest.mark.parametrize("name, expected", [
    ("all", [1, 1, 1, 1, 1, 1, 1]),
    ("Mon-Fri", [1, 1, 1, 1, 1, 0, 0]),
    ("mon-fri", [1, 1, 1, 1, 1, 0, 0]),
    ("Monday-Friday", [1, 1, 1, 1, 1, 0, 0]),
    ("Mon,Wed,Fri", [1, 0, 1, 0, 1, 0, 0]),
    ("Mon, wed ,FRI", [1, 0, 1, 0, 1, 0, 0]),
    ("Sat-Sun", [0, 0, 0, 0, 0, 1, 1]),
    ("Fri-Mon", [1, 0, 0, 0, 1, 1, 1]),
    ("Tues,Thurs", [0, 1, 0, 1, 0, 0, 0]),
    ("Sun", [0, 0, 0, 0, 0, 0, 1]),
    ("Mon-Wed,Sat", [1, 1, 1, 0, 0, 1, 0]),
])
def test_weekday_sets(name, expected):
    assert days(get_calendar(name), "2026-11-23", 7) == [bool(e) for e in expected]


def test_a_calendar_prints_its_name():
    cal = get_calendar("market:NYSE")
    assert str(cal) == "market:NYSE"
    assert "market:NYSE" in repr(cal)


def test_built_calendars_are_cached():
    assert get_calendar("Mon-Fri") is get_calendar("Mon-Fri")
    assert get_calendar("holidays:GB") is get_calendar("holidays:GB")
    # Different spellings share the holiday list, the expensive part.
    assert get_calendar("holidays:us").sources[0] is get_calendar("holidays:US").sources[0]


@pytest.mark.parametrize("name, fragment", [
    ("Mnday-Fri", "not a weekday: 'Mnday' (did you mean 'Monday'?)"),
    ("Mon-Fir", "(did you mean 'Fri'?)"),
    ("Mon-", "bad weekday range"),
    ("Mon-Tue-Wed", "bad weekday range"),
])
def test_bad_weekday_spelling(name, fragment):
    with pytest.raises(ValueError, match="bad weekday set") as exc:
        get_calendar(name)
    assert fragment in str(exc.value)


def test_weekday_set_parsing_wraps():
    assert parse_weekdays("Sat-Tue") == {5, 6, 0, 1}
    assert parse_weekdays("Mon-Mon") == {0}


def test_nyse_thanksgiving_and_christmas():
    nyse = get_calendar("market:NYSE")
    assert not nyse.contains("2026-11-26")  # Thanksgiving
    assert nyse.contains("2026-11-27")  # open (a half day, still a trading day)
    assert not nyse.contains("2026-12-25")
    assert not nyse.contains("2026-11-28")  # Saturday
    assert nyse.contains(dt.date(2026, 11, 25))


def test_market_by_mic_is_the_same_market():
    xnys, nyse = get_calendar("market:XNYS"), get_calendar("market:nyse")
    for date in ("2026-11-26", "2026-11-27", "2026-07-03", "2026-04-03"):
        assert xnys.contains(date) == nyse.contains(date)


def test_every_market_the_package_knows_is_usable():
    assert {"NYSE", "XNYS", "LSE", "XLON"} <= set(market_codes())
    for code in market_codes():
        get_calendar(f"market:{code}").contains("2026-01-01")


def test_country_holidays():
    gb = get_calendar("holidays:GB")
    assert not gb.contains("2026-12-25")
    assert not gb.contains("2026-12-28")  # Boxing Day (26th, a Saturday) observed on Monday
    assert gb.contains("2026-12-29")
    assert not gb.contains("2026-12-26")  # a Saturday: holiday calendars are Mon-Fri
    # Easter Monday is a holiday in England, not UK-wide.
    assert gb.contains("2026-04-06")
    assert not get_calendar("holidays:GB:ENG").contains("2026-04-06")


def test_country_subdivision():
    us, ny = get_calendar("holidays:US"), get_calendar("holidays:US:NY")
    assert us.contains("2026-02-12") and not ny.contains("2026-02-12")  # Lincoln's Birthday
    assert not us.contains("2026-11-26") and not ny.contains("2026-11-26")
    assert get_calendar("holidays:us:ny").contains("2026-02-13")


def test_observed_holiday_in_the_previous_year():
    # New Year's Day 2022 was a Saturday; US federal holiday observed Friday 2021-12-31.
    assert not get_calendar("holidays:US").contains("2021-12-31")


@pytest.mark.parametrize("name, fragments", [
    ("holidays:UX", ["unknown country 'UX'", "did you mean"]),
    ("holidays:US:XX", ["unknown subdivision 'XX' of US", "NY"]),
    ("market:NYSX", ["unknown market 'NYSX'", "(did you mean 'XNYS'?)", "known markets:", "LSE"]),
    ("markets:NYSE", ["'markets' is not a calendar kind", "did you mean 'market'"]),
    ("holidays:", ["missing the country code"]),
    ("weekly", ["unknown calendar 'weekly'", "Mon-Fri"]),
])
def test_unknown_names(name, fragments):
    with pytest.raises(ValueError) as exc:
        get_calendar(name)
    for fragment in fragments:
        assert fragment in str(exc.value)


def test_unknown_named_calendar_hints():
    named = {"us-bank": get_calendar("holidays:US")}
    with pytest.raises(ValueError, match=r"unknown calendar 'us-bnk' \(did you mean 'us-bank'\?\)"):
        get_calendar("us-bnk", named)
    with pytest.raises(ValueError, match="named calendars: us-bank"):
        get_calendar("payroll", named)


def test_resolver_knows_named_calendars():
    bank = get_calendar("holidays:US")
    resolve = CalendarResolver({"bank": bank})
    assert resolve("bank") is bank
    assert str(resolve("Mon-Fri")) == "Mon-Fri"


def test_year_cache_is_fast():
    cal = get_calendar("market:NYSE")
    start = dt.date(2020, 1, 1)
    dates = [start + dt.timedelta(days=i) for i in range(3650)]
    cal.contains_date(start)
    import time

    t0 = time.perf_counter()
    for _ in range(10):
        for date in dates:
            cal.contains_date(date)
    # 36 500 lookups over ten years: well under a second even on a slow machine.
    assert time.perf_counter() - t0 < 1.0

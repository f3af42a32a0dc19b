import datetime as dt

import pytest

from apsis.lib.timefmt import (UTC, format_duration, format_time, parse_daytime, parse_duration,
                               parse_time)


@pytest.mark.parametrize("text,seconds", [
    (90, 90), ("30s", 30), ("10m", 600), ("10 min", 600), ("1.5h", 5400), ("1d", 86400),
    ("2w", 1209600), ("45", 45),
])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "10 parsecs", "-5", True, None, "1h30m"])
def test_bad_durations(bad):
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_daytimes():
    assert parse_daytime("09:30") == dt.time(9, 30)
    assert parse_daytime("16:00:05") == dt.time(16, 0, 5)
    for bad in ["24:00", "9", "09:60", 570]:
        with pytest.raises(ValueError):
            parse_daytime(bad)


def test_times():
    now = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_time("now", now_=now) == now
    assert parse_time("+1h", now_=now) == now + dt.timedelta(hours=1)
    assert parse_time("2026-01-02T09:30:00Z") == dt.datetime(2026, 1, 2, 9, 30, tzinfo=UTC)
    assert parse_time("2026-01-02T09:30:00-05:00") == dt.datetime(2026, 1, 2, 14, 30, tzinfo=UTC)
    assert parse_time("2026-01-02") == dt.datetime(2026, 1, 2, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_time("tomorrow-ish")
    assert format_time(dt.datetime(2026, 1, 2, 9, 30, tzinfo=UTC)) == "2026-01-02T09:30:00Z"


def test_format_duration():
    assert format_duration(3723) == "1:02:03"
    assert format_duration(5) == "0:05"
    assert format_duration(90061) == "1d 1:01:01"

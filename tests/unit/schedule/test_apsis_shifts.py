"""Shifted schedules as Apsis reads them (issue 12 items 4, 7): a daily schedule's `time`
arg is its own date at the daytime; `daily-interval` takes `{daytime, date_shift,
cal_shift}` for `start` and `stop`. Examples, then properties across DST days."""

from __future__ import annotations

import datetime as dt
import itertools
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from apsis.errors import JobError
from apsis.lib.timefmt import format_time
from apsis.schedule.daily_interval import DailyIntervalSchedule, DaytimeSpec
from apsis.schedule.dst import localize

from .helpers import CALENDARS, local, parse, parse_jso, take
from .test_properties import SETTINGS, daytimes, expected_time, runs_for, windows

NY = "America/New_York"


def times_and_dates(runs) -> list[tuple[str, str]]:
    return [(local(r, NY), r.args["date"]) for r in runs]


# --- daily: the `time` arg -------------------------------------------------------------

def test_cal_shifted_daily_time_arg_is_its_own_date_at_the_daytime():
    # Apsis's "daily cal shift" job: MWF, run on the next calendar date.
    s, diags = parse("""\
schedule:
  type: daily
  calendar: Mon-Fri
  daytime: [9:30:00, 17:00:00]
  tz: America/New_York
  cal_shift: 1
""")
    assert not diags.items
    [friday_0930, friday_1700] = take(s, "2024-07-08T00:00:00-04:00", 2)  # Monday, for Friday
    assert friday_0930.args["date"] == "2024-07-05"
    assert local(friday_0930, NY) == "2024-07-08T09:30:00-04:00"
    assert friday_0930.args["time"] == "2024-07-05T13:30:00Z"
    assert friday_1700.args["time"] == "2024-07-05T21:00:00Z"


def test_date_and_time_shifted_daily_time_arg_is_not_shifted():
    s, _ = parse("schedule: {type: daily, tz: Europe/London, daytime: '23:00', date_shift: -1, "
                 "time_shift: 2h}\n")
    [run] = take(s, "2024-07-05T00:00:00Z", 1)
    # For 07-05: the day before at 23:00, plus two hours.
    assert (run.args["date"], local(run, "Europe/London")) == ("2024-07-05", "2024-07-05T01:00:00+01:00")
    assert run.args["time"] == "2024-07-05T22:00:00Z"


def test_unshifted_daily_time_arg_is_the_run_time():
    s, _ = parse("schedule: {type: daily, tz: America/New_York, daytime: '09:30'}\n")
    [run] = take(s, "2024-07-05T00:00:00Z", 1)
    assert run.args["time"] == format_time(run.time) == "2024-07-05T13:30:00Z"


# --- daily-interval: the mapping form --------------------------------------------------

def test_the_mapping_form_loads_and_round_trips():
    s, diags = parse("""\
schedule:
  type: daily-interval
  tz: Asia/Tokyo
  calendar: Mon-Fri
  start:
    daytime: 12:00:00
    cal_shift: -1
  stop:
    daytime: 17:00:00
    date_shift: -1
  interval: 1800
""")
    assert not diags.items
    assert isinstance(s, DailyIntervalSchedule)
    assert s.start == DaytimeSpec(dt.time(12), cal_shift=-1)
    assert s.stop == DaytimeSpec(dt.time(17), date_shift=-1)
    jso = s.to_jso()
    assert jso["start"] == {"daytime": "12:00:00", "date_shift": 0, "cal_shift": -1}
    assert parse_jso(jso) == s
    # Bare daytimes stay bare.
    plain, _ = parse("schedule: {type: daily-interval, tz: UTC, start: '22:00:00', "
                     "stop: '23:59:59', interval: 300}\n")
    assert (plain.to_jso()["start"], plain.to_jso()["stop"]) == ("22:00:00", "23:59:59")


def test_an_interval_over_midnight_with_a_date_shifted_stop():
    # Every 2 hours from 21:00 until 05:00 the next day, for each weekday.
    s, _ = parse("schedule: {type: daily-interval, tz: America/New_York, calendar: Mon-Fri, "
                 "start: '21:00:00', stop: {daytime: '05:00:00', date_shift: 1}, interval: 2h}\n")
    runs = take(s, "2022-11-03T22:00:00-04:00", 11)
    assert times_and_dates(runs) == [
        ("2022-11-03T23:00:00-04:00", "2022-11-03"),
        ("2022-11-04T01:00:00-04:00", "2022-11-03"),
        ("2022-11-04T03:00:00-04:00", "2022-11-03"),
        ("2022-11-04T21:00:00-04:00", "2022-11-04"),
        ("2022-11-04T23:00:00-04:00", "2022-11-04"),
        ("2022-11-05T01:00:00-04:00", "2022-11-04"),
        ("2022-11-05T03:00:00-04:00", "2022-11-04"),
        # DST ended on Sunday 11-06; Monday's interval is on standard time.
        ("2022-11-07T21:00:00-05:00", "2022-11-07"),
        ("2022-11-07T23:00:00-05:00", "2022-11-07"),
        ("2022-11-08T01:00:00-05:00", "2022-11-07"),
        ("2022-11-08T03:00:00-05:00", "2022-11-07"),
    ]
    assert runs[1].args["sched_date"] == "2022-11-04"
    assert runs[1].args["daytime"] == "01:00:00"


def test_a_cal_shifted_start_and_stop_run_for_the_previous_calendar_date():
    s, _ = parse("schedule: {type: daily-interval, tz: America/New_York, calendar: Mon-Fri, "
                 "start: {daytime: '12:00:00', cal_shift: 1}, stop: {daytime: '18:00:00', cal_shift: 1}, "
                 "interval: 2h}\n")
    runs = take(s, "2022-11-04T13:00:00-04:00", 3)
    assert times_and_dates(runs) == [
        ("2022-11-04T14:00:00-04:00", "2022-11-03"),
        ("2022-11-04T16:00:00-04:00", "2022-11-03"),
        ("2022-11-07T12:00:00-05:00", "2022-11-04"),  # Friday's runs are on Monday
    ]


def test_an_interval_from_the_previous_calendar_date_keeps_a_wall_clock_grid_over_dst():
    # From 22:00 on the previous weekday until noon, every 6 hours: Monday's interval
    # spans the weekend and the end of DST. The grid is of wall-clock times (04:00 on
    # Sunday, not Apsis's 03:00 six elapsed hours after Saturday 22:00): every date has
    # the same daytimes.
    s, _ = parse("schedule: {type: daily-interval, tz: America/New_York, calendar: Mon-Fri, "
                 "start: {daytime: '22:00:00', cal_shift: -1}, stop: '12:00:00', interval: 6h}\n")
    runs = take(s, "2022-11-05T21:00:00-04:00", 7)
    assert times_and_dates(runs) == [
        ("2022-11-05T22:00:00-04:00", "2022-11-07"),
        ("2022-11-06T04:00:00-05:00", "2022-11-07"),
        ("2022-11-06T10:00:00-05:00", "2022-11-07"),
        ("2022-11-06T16:00:00-05:00", "2022-11-07"),
        ("2022-11-06T22:00:00-05:00", "2022-11-07"),
        ("2022-11-07T04:00:00-05:00", "2022-11-07"),
        ("2022-11-07T10:00:00-05:00", "2022-11-07"),
    ]


def test_stop_before_start_is_refused_only_when_it_is_on_the_same_date():
    _, diags = parse("schedule: {type: daily-interval, tz: UTC, start: '22:00', "
                     "stop: {daytime: '02:00', date_shift: 1}, interval: 1h}\n")
    assert not diags.items
    with pytest.raises(JobError, match="must be after start"):
        parse("schedule: {type: daily-interval, tz: UTC, start: {daytime: '22:00', "
              "date_shift: 1}, stop: {daytime: '02:00', date_shift: 1}, interval: 1h}\n")


def test_a_misspelt_key_in_the_mapping_is_reported_with_a_hint():
    _, diags = parse("schedule: {type: daily-interval, tz: UTC, start: {daytime: '09:00', "
                     "date_shfit: 1}, stop: '17:00', interval: 1h}\n")
    assert any("date_shift" in d.message for d in diags.errors), diags.items


# --- properties across DST days --------------------------------------------------------

@SETTINGS
@given(windows(), st.lists(daytimes, min_size=1, max_size=3), st.sampled_from(["all", "Mon-Fri"]),
       st.integers(-3, 3), st.integers(-2, 2), st.sampled_from([0, 0, 3600, 5400]))
def test_shifted_daily_runs_at_the_shifted_date_and_provides_its_own(
        window, times, calendar, date_shift, cal_shift, time_shift):
    tz, first, last, gap, fold = window
    schedule = parse_jso({"type": "daily", "tz": tz, "daytime": [t.isoformat() for t in times],
                          "calendar": calendar, "date_shift": date_shift, "cal_shift": cal_shift,
                          "time_shift": time_shift, "dst_gap": gap, "dst_fold": fold})
    cal = CALENDARS[calendar]
    runs = runs_for(schedule, first - dt.timedelta(days=6), last + dt.timedelta(days=6))
    seen = [(r.args["date"], r.args["daytime"]) for r in runs]
    assert len(seen) == len(set(seen)), "a (date, daytime) ran twice"
    for a, b in itertools.pairwise(runs):
        assert a.time <= b.time
    for run in runs:
        date = dt.date.fromisoformat(run.args["date"])
        daytime = dt.time.fromisoformat(run.args["daytime"])
        assert cal.contains_date(date)
        run_date = cal.shift_date(date, cal_shift) + dt.timedelta(days=date_shift)
        due, skipped = expected_time(run_date, daytime, tz, gap, fold)
        assert run.time == due + dt.timedelta(seconds=time_shift), run.args
        assert (run.skip_reason is not None) == skipped
        own, _ = expected_time(date, daytime, tz, gap, fold)
        assert run.args["time"] == format_time(own)
    # Every admitted date of the window has all its daytimes.
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    wanted = {(d.isoformat(), t.isoformat()) for d in days if cal.contains_date(d) for t in times}
    assert wanted <= set(seen)


spans = st.tuples(st.integers(-1, 1), st.integers(-1, 1))


@SETTINGS
@given(windows(), daytimes, daytimes, spans, spans, st.sampled_from([1800, 3600, 5400, 7200]),
       st.sampled_from(["all", "Mon-Fri"]))
def test_daily_interval_mapping_form_one_run_per_date_and_wall_time(
        window, start, stop, start_shift, stop_shift, interval, calendar):
    tz, first, last, gap, fold = window
    jso = {"type": "daily-interval", "tz": tz, "calendar": calendar, "interval": interval,
           "start": {"daytime": start.isoformat(), "date_shift": start_shift[0],
                     "cal_shift": start_shift[1]},
           "stop": {"daytime": stop.isoformat(), "date_shift": stop_shift[0],
                    "cal_shift": stop_shift[1]},
           "dst_gap": gap, "dst_fold": fold}
    if start_shift == stop_shift and stop <= start:
        return  # refused at load (tested above)
    schedule = parse_jso(jso)
    cal = CALENDARS[calendar]
    zone = ZoneInfo(tz)
    runs = runs_for(schedule, first - dt.timedelta(days=3), last + dt.timedelta(days=3))
    seen = [(r.args["date"], r.args["sched_date"], r.args["daytime"]) for r in runs]
    assert len(seen) == len(set(seen)), "a (date, wall time) ran twice"
    for a, b in itertools.pairwise(runs):
        assert a.time <= b.time
    by_date: dict[str, list[dt.datetime]] = {}
    for run in runs:
        wall = dt.datetime.combine(dt.date.fromisoformat(run.args["sched_date"]),
                                   dt.time.fromisoformat(run.args["daytime"]))
        # localize itself is checked against brute force in test_properties.
        due = localize(wall.date(), wall.time(), zone, gap, fold)
        assert run.time == due.time and run.skip_reason == due.skip_reason
        assert run.args["time"] == format_time(run.time)
        by_date.setdefault(run.args["date"], []).append(wall)
    # Each admitted date of the window: exactly its wall-clock grid.
    step = dt.timedelta(seconds=interval)
    for i in range((last - first).days + 1):
        date = first + dt.timedelta(days=i)
        if not cal.contains_date(date):
            assert date.isoformat() not in by_date
            continue
        begin = schedule.start.on(date, cal)
        end = schedule.stop.on(date, cal)
        grid = []
        while begin < end:
            grid.append(begin)
            begin += step
        assert sorted(by_date.get(date.isoformat(), [])) == grid, date


def test_the_wall_clock_grid_is_the_same_on_a_spring_forward_day():
    s = parse_jso({"type": "daily-interval", "tz": NY, "start": "01:15", "stop": "03:30",
                   "interval": 1800})
    runs = take(s, "2023-03-12T00:00:00-05:00", 5)
    # 02:15 and 02:45 do not exist that day: both run at the gap's end (03:00 EDT).
    assert [r.time.astimezone(ZoneInfo(NY)).isoformat() for r in runs] == [
        "2023-03-12T01:15:00-05:00", "2023-03-12T01:45:00-05:00", "2023-03-12T03:00:00-04:00",
        "2023-03-12T03:00:00-04:00", "2023-03-12T03:15:00-04:00",
    ]

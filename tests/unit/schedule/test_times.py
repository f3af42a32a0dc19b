"""What each schedule yields: times, provided args, shifts, calendars, start/stop, laziness."""

from __future__ import annotations

import datetime as dt
import itertools
import time as _time

from .helpers import local, parse, take, utc

# --- interval ------------------------------------------------------------------------

def test_interval_is_epoch_aligned_and_provides_utc_args():
    s, _ = parse("schedule: {type: interval, interval: 1h, phase: 10m}\n")
    runs = take(s, "2026-03-01T05:10:00Z", 3)
    assert [r.args for r in runs] == [
        {"time": f"2026-03-01T0{h}:10:00Z", "date": "2026-03-01", "daytime": f"0{h}:10:00"}
        for h in (5, 6, 7)
    ]
    # Between grid points: the next one.
    assert take(s, "2026-03-01T05:10:00.000001Z", 1)[0].time == utc("2026-03-01T06:10:00Z")


def test_interval_fractional_seconds_stay_on_the_grid():
    s, _ = parse("schedule: {type: interval, interval: 0.1}\n")
    runs = take(s, "2026-01-01T00:00:00.05Z", 1000)
    assert runs[0].time == utc("2026-01-01T00:00:00.1Z")
    assert runs[-1].time == utc("2026-01-01T00:01:40Z")


def test_explicit_args_win_over_provided_ones():
    s, _ = parse("schedule: {type: interval, interval: 1d, args: {date: fixed, region: EU}}\n")
    [run] = take(s, "2026-01-01T00:00:00Z", 1)
    assert run.args == {"time": "2026-01-01T00:00:00Z", "date": "fixed", "daytime": "00:00:00",
                        "region": "EU"}


def test_naive_start_is_utc():
    s, _ = parse("schedule: {type: interval, interval: 1h}\n")
    assert take(s, dt.datetime(2026, 1, 1, 0, 30), 1)[0].time == utc("2026-01-01T01:00:00Z")


# --- explicit ------------------------------------------------------------------------

def test_explicit_yields_the_times_at_or_after_start_then_ends():
    s, _ = parse(
        "schedule:\n  type: explicit\n  times: [2026-01-03T00:00:00Z, 2026-01-01T00:00:00+01:00,"
        " 2026-01-02T00:00:00Z]\n"
    )
    runs = list(s.times(utc("2026-01-02T00:00:00Z")))
    assert [r.args for r in runs] == [{"time": "2026-01-02T00:00:00Z"}, {"time": "2026-01-03T00:00:00Z"}]
    assert next(r.time for r in s.times(utc("2020-01-01T00:00:00Z"))) == utc("2025-12-31T23:00:00Z")


# --- daily -----------------------------------------------------------------------------

def test_daily_provides_its_args():
    s, _ = parse(
        "schedule: {type: daily, tz: America/New_York, daytime: ['16:00', '09:30'], calendar: Mon-Fri}\n"
    )
    runs = take(s, "2024-07-05T14:00:00Z", 3)  # Friday 10:00 EDT
    assert [r.args for r in runs] == [
        {"date": "2024-07-05", "time": "2024-07-05T20:00:00Z", "daytime": "16:00:00",
         "calendar": "Mon-Fri", "tz": "America/New_York"},
        {"date": "2024-07-08", "time": "2024-07-08T13:30:00Z", "daytime": "09:30:00",
         "calendar": "Mon-Fri", "tz": "America/New_York"},
        {"date": "2024-07-08", "time": "2024-07-08T20:00:00Z", "daytime": "16:00:00",
         "calendar": "Mon-Fri", "tz": "America/New_York"},
    ]


def test_daily_start_exactly_at_a_run_includes_it():
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '09:00'}\n")
    assert take(s, "2024-07-05T09:00:00Z", 1)[0].args["date"] == "2024-07-05"


def test_daily_holidays_are_skipped():
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '09:00', calendar: bank}\n")
    runs = take(s, "2024-07-03T00:00:00Z", 2)
    assert [r.args["date"] for r in runs] == ["2024-07-03", "2024-07-08"]


def test_daily_date_shift_runs_days_after_the_date():
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '01:00', calendar: Mon-Fri, date_shift: 1}\n")
    runs = take(s, "2024-07-09T00:00:00Z", 5)  # from Tuesday
    assert [(r.args["date"], r.time.date().isoformat()) for r in runs] == [
        ("2024-07-08", "2024-07-09"), ("2024-07-09", "2024-07-10"), ("2024-07-10", "2024-07-11"),
        ("2024-07-11", "2024-07-12"), ("2024-07-12", "2024-07-13"),
    ]


def test_daily_cal_shift_runs_calendar_days_after_the_date():
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '01:00', calendar: bank, cal_shift: 1}\n")
    runs = take(s, "2024-07-02T00:00:00Z", 3)
    # 07-03's next bank day is 07-08 (07-04 and 07-05 are holidays).
    assert [(r.args["date"], r.time.date().isoformat()) for r in runs] == [
        ("2024-07-01", "2024-07-02"), ("2024-07-02", "2024-07-03"), ("2024-07-03", "2024-07-08"),
    ]


def test_daily_negative_cal_shift():
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '18:00', calendar: bank, cal_shift: -1}\n")
    runs = take(s, "2024-07-03T19:00:00Z", 2)
    # 07-08's previous bank day is 07-03: that run is at 07-03 18:00, before start.
    assert [(r.args["date"], r.time.date().isoformat()) for r in runs] == [
        ("2024-07-09", "2024-07-08"), ("2024-07-10", "2024-07-09"),
    ]
    runs = take(s, "2024-07-03T18:00:00Z", 1)
    assert (runs[0].args["date"], runs[0].time.date().isoformat()) == ("2024-07-08", "2024-07-03")


def test_daily_time_shift_moves_the_instant_not_the_args():
    s, _ = parse("schedule: {type: daily, tz: Europe/London, daytime: '23:00', time_shift: 2h}\n")
    runs = take(s, "2024-07-05T00:00:00Z", 2)
    assert [(r.args["date"], r.args["daytime"], local(r, "Europe/London")) for r in runs] == [
        ("2024-07-04", "23:00:00", "2024-07-05T01:00:00+01:00"),
        ("2024-07-05", "23:00:00", "2024-07-06T01:00:00+01:00"),
    ]


def test_a_calendar_with_no_dates_ends_the_generator():
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '09:00', calendar: never}\n")
    assert list(s.times(utc("2024-01-01T00:00:00Z"))) == []
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '09:00', calendar: never, cal_shift: 2}\n")
    assert list(s.times(utc("2024-01-01T00:00:00Z"))) == []


# --- daily-interval ------------------------------------------------------------------

def test_daily_interval_grid_and_args():
    s, _ = parse(
        "schedule: {type: daily-interval, tz: Europe/London, start: '09:00', stop: '10:00', "
        "interval: 20m, calendar: Mon-Fri}\n"
    )
    runs = take(s, "2024-07-05T08:30:00Z", 4)  # Friday 09:30 BST
    assert [(r.args["date"], r.args["daytime"]) for r in runs] == [
        ("2024-07-05", "09:40:00"), ("2024-07-08", "09:00:00"), ("2024-07-08", "09:20:00"),
        ("2024-07-08", "09:40:00"),
    ]
    assert runs[0].args == {"date": "2024-07-05", "time": "2024-07-05T08:40:00Z",
                            "daytime": "09:40:00", "calendar": "Mon-Fri", "tz": "Europe/London",
                            "sched_date": "2024-07-05"}


# --- cron --------------------------------------------------------------------------------

def cron_dates(expr: str, start: str, n: int) -> list[str]:
    s, _ = parse(f"schedule: {{type: cron, expr: '{expr}', tz: UTC}}\n")
    return [r.args["date"] for r in take(s, start, n)]


def test_cron_provides_its_args():
    s, _ = parse("schedule: {type: cron, expr: '*/15 9-17 * * Mon-Fri', tz: America/New_York}\n")
    runs = take(s, "2024-07-05T21:50:00Z", 2)  # Friday 17:50 EDT
    assert [r.args for r in runs] == [
        {"date": "2024-07-08", "time": "2024-07-08T13:00:00Z", "daytime": "09:00:00",
         "tz": "America/New_York"},
        {"date": "2024-07-08", "time": "2024-07-08T13:15:00Z", "daytime": "09:15:00",
         "tz": "America/New_York"},
    ]


def test_cron_day_fields_follow_vixie():
    # Both restricted: either matches (the 13th, or any Friday).
    assert cron_dates("0 0 13 * Fri", "2024-10-01T00:00:00Z", 4) == [
        "2024-10-04", "2024-10-11", "2024-10-13", "2024-10-18"]
    assert cron_dates("0 0 1 * Wed", "2024-05-01T00:00:00Z", 3) == ["2024-05-01", "2024-05-08", "2024-05-15"]
    # One starts with `*`: both must match (odd days that are Mondays).
    assert cron_dates("0 0 */2 * Mon", "2024-07-01T00:00:00Z", 2) == ["2024-07-01", "2024-07-15"]


def test_cron_last_day_nth_weekday_months_and_sunday_seven():
    assert cron_dates("0 0 L * *", "2024-01-15T00:00:00Z", 3) == ["2024-01-31", "2024-02-29", "2024-03-31"]
    assert cron_dates("0 0 * * Sun#2", "2024-01-01T00:00:00Z", 2) == ["2024-01-14", "2024-02-11"]
    assert cron_dates("0 0 1 Jan,Jul *", "2024-02-01T00:00:00Z", 2) == ["2024-07-01", "2025-01-01"]
    assert cron_dates("0 0 * * 7", "2024-07-01T00:00:00Z", 1) == ["2024-07-07"]
    assert cron_dates("0 0 29 2 *", "2024-03-01T00:00:00Z", 1) == ["2028-02-29"]


def test_cron_calendar_filter():
    s, _ = parse("schedule: {type: cron, expr: '0 12 * * *', tz: UTC, calendar: bank}\n")
    runs = take(s, "2024-07-03T13:00:00Z", 2)
    assert [r.args["date"] for r in runs] == ["2024-07-08", "2024-07-09"]
    assert runs[0].args["calendar"] == "bank"


def test_cron_that_never_matches_ends():
    s, _ = parse("schedule: {type: cron, expr: '0 0 30 2 *', tz: UTC}\n")
    assert list(s.times(utc("2024-01-01T00:00:00Z"))) == []


def test_every_minute_cron_is_lazy():
    s, _ = parse("schedule: {type: cron, expr: '* * * * *', tz: Europe/London}\n")
    t0 = _time.perf_counter()
    gen = s.times(utc("2024-01-01T00:00:00Z"))
    first = list(itertools.islice(gen, 3))
    assert _time.perf_counter() - t0 < 0.5
    assert [r.args["daytime"] for r in first] == ["00:00:00", "00:01:00", "00:02:00"]
    # A year later is one generator call away, without materializing the years between.
    later = take(s, "2030-06-01T12:00:30Z", 1)[0]
    assert local(later, "Europe/London") == "2030-06-01T13:01:00+01:00"


# --- start/stop ----------------------------------------------------------------------------

def test_start_stop_duration():
    s, _ = parse(
        "schedule:\n  start: {type: interval, interval: 1h}\n  stop: {type: duration, duration: 30m}\n"
    )
    [run] = take(s, "2026-01-01T00:00:00Z", 1)
    assert run.stop_time == utc("2026-01-01T00:30:00Z") and run.args["time"] == "2026-01-01T00:00:00Z"


def test_start_stop_daytime_is_the_next_occurrence():
    s, _ = parse(
        "schedule:\n  start: {type: daily, tz: America/New_York, daytime: ['09:00', '18:00']}\n"
        "  stop: {type: daytime, daytime: '17:00'}\n"
    )
    runs = take(s, "2024-07-05T00:00:00Z", 2)
    assert [local(r, "America/New_York") for r in runs] == [
        "2024-07-05T09:00:00-04:00", "2024-07-05T18:00:00-04:00"]
    assert [r.stop_time.astimezone(s.stop.tz).isoformat() for r in runs] == [
        "2024-07-05T17:00:00-04:00", "2024-07-06T17:00:00-04:00"]


def test_start_stop_daytime_in_a_gap_stops_at_the_gap_end():
    s, _ = parse(
        "schedule:\n  start: {type: daily, tz: America/New_York, daytime: '01:00'}\n"
        "  stop: {type: daytime, daytime: '02:30'}\n"
    )
    [run] = take(s, "2024-03-10T00:00:00-05:00", 1)
    assert run.stop_time.astimezone(s.stop.tz).isoformat() == "2024-03-10T03:00:00-04:00"

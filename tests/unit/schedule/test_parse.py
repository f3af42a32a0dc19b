"""Parsing every schedule type strictly, with located errors, and the JSON round trip."""

from __future__ import annotations

import datetime as dt

import pytest

from apsis.errors import JobError
from apsis.schedule import (
    CronSchedule,
    DailyIntervalSchedule,
    DailySchedule,
    DaytimeStop,
    DurationStop,
    ExplicitSchedule,
    IntervalSchedule,
    StartStopSchedule,
)

from .helpers import parse, parse_jso, parse_many, utc


def error_of(text: str) -> JobError:
    with pytest.raises(JobError) as exc:
        parse(text)
    return exc.value


# --- each type -------------------------------------------------------------------------

def test_interval_keys_and_defaults():
    s, diags = parse("schedule:\n  type: interval\n  interval: 1h\n  phase: 10 min\n")
    assert not diags.items
    assert isinstance(s, IntervalSchedule)
    assert (s.interval, s.phase, s.enabled, s.args, s.jitter, s.catchup) == (3600, 600, True, {}, 0, "all")


def test_common_keys():
    s, _ = parse(
        "schedule:\n  type: interval\n  interval: 90\n  enabled: false\n"
        "  args: {country: US, n: 3}\n  jitter: 30s\n  catchup: latest\n"
    )
    assert (s.enabled, s.args, s.jitter, s.catchup) == (False, {"country": "US", "n": "3"}, 30, "latest")


def test_daily_keys_and_defaults():
    s, diags = parse(
        "schedule:\n  type: daily\n  tz: America/New_York\n  daytime: ['16:00:00', '09:30']\n"
    )
    assert not diags.items
    assert isinstance(s, DailySchedule)
    assert s.tz.key == "America/New_York"
    assert s.daytimes == [dt.time(9, 30), dt.time(16)]
    assert (s.calendar_name, s.calendar.name) == ("all", "all")
    assert (s.date_shift, s.cal_shift, s.time_shift_seconds) == (0, 0, 0)
    assert (s.dst_gap, s.dst_fold) == ("end", "first")


def test_daily_one_daytime_and_shifts():
    s, _ = parse(
        "schedule:\n  type: daily\n  tz: Europe/London\n  daytime: '09:30'\n  calendar: Mon-Fri\n"
        "  date_shift: -1\n  cal_shift: 2\n  time_shift: 1h\n  dst_gap: skip\n  dst_fold: second\n"
    )
    assert s.daytimes == [dt.time(9, 30)] and s.calendar_name == "Mon-Fri"
    assert (s.date_shift, s.cal_shift, s.time_shift_seconds) == (-1, 2, 3600)
    assert (s.dst_gap, s.dst_fold) == ("skip", "second")


def test_daily_interval_keys():
    s, diags = parse(
        "schedule:\n  type: daily-interval\n  tz: Australia/Lord_Howe\n  start: '09:00'\n"
        "  stop: '17:00'\n  interval: 30m\n  calendar: Mon-Fri\n  dst_gap: shift\n"
    )
    assert not diags.items
    assert isinstance(s, DailyIntervalSchedule)
    assert (s.start.daytime, s.stop.daytime, s.interval, s.calendar_name) == (
        dt.time(9), dt.time(17), 1800, "Mon-Fri")
    assert not s.start.shifted and not s.stop.shifted
    assert len(next(s.wall_times(dt.date(2026, 3, 2)))) == 16  # a Monday


def test_cron_keys():
    s, diags = parse("schedule:\n  type: cron\n  expr: '*/15 9-17 * * Mon-Fri'\n  tz: UTC\n")
    assert not diags.items
    assert isinstance(s, CronSchedule)
    assert s.expr == "*/15 9-17 * * Mon-Fri" and s.calendar_name is None and s.calendar is None
    assert len(s.cron.daytimes) == 4 * 9


def test_cron_aliases_and_calendar_filter():
    s, _ = parse("schedule: {type: cron, expr: '@daily', tz: UTC, calendar: Mon-Fri}\n")
    assert s.cron.daytimes == (dt.time(0, 0),) and s.calendar_name == "Mon-Fri"


def test_explicit_one_or_list():
    s, _ = parse("schedule: {type: explicit, times: '2026-01-02T09:30:00-05:00'}\n")
    assert isinstance(s, ExplicitSchedule) and s.instants == [utc("2026-01-02T14:30:00Z")]
    s, _ = parse(
        "schedule:\n  type: explicit\n  times:\n    - 2026-01-03T00:00:00Z\n"
        "    - 2026-01-02T00:00:00Z\n    - 2026-01-03T00:00:00Z\n"
    )
    assert s.instants == [utc("2026-01-02T00:00:00Z"), utc("2026-01-03T00:00:00Z")]


def test_start_stop_form():
    s, diags = parse(
        "schedule:\n  start: {type: daily, tz: America/New_York, daytime: '09:00', jitter: 5s}\n"
        "  stop: {type: duration, duration: 2h}\n"
    )
    assert not diags.items
    assert isinstance(s, StartStopSchedule) and isinstance(s.stop, DurationStop)
    assert s.stop.duration == 7200 and s.jitter == 5 and s.enabled
    s, _ = parse(
        "schedule:\n  start: {type: daily, tz: America/New_York, daytime: '09:00'}\n"
        "  stop: {type: daytime, daytime: '17:00', tz: Europe/London}\n"
    )
    assert isinstance(s.stop, DaytimeStop) and s.stop.tz.key == "Europe/London"


def test_start_stop_daytime_takes_the_start_schedules_tz():
    s, _ = parse(
        "schedule:\n  start: {type: daily, tz: America/New_York, daytime: '09:00'}\n"
        "  stop: {type: daytime, daytime: '17:00'}\n"
    )
    assert s.stop.tz.key == "America/New_York"


def test_parse_schedules_one_or_list_reports_every_bad_one():
    schedules, diags = parse_many("schedule: {type: interval, interval: 1h}\n")
    assert len(schedules) == 1 and not diags.items
    schedules, diags = parse_many(
        "schedule:\n  - {type: interval, interval: 1h}\n  - {type: interval, interval: never}\n"
        "  - {type: daily, tz: Nowhere/City, daytime: '09:00'}\n"
    )
    assert len(schedules) == 1
    assert [str(d.loc) for d in diags.errors] == ["job.yaml:3:32", "job.yaml:4:23"]


# --- round trip --------------------------------------------------------------------------

ROUND_TRIP = [
    "schedule: {type: interval, interval: 1.5h, phase: 90, args: {a: b}, jitter: 10s}\n",
    ("schedule:\n  type: daily\n  tz: America/New_York\n  daytime: ['09:30', '16:00:00.25']\n"
    "  calendar: Mon-Fri\n  date_shift: 1\n  cal_shift: -1\n  time_shift: 5m\n  catchup: none\n"
    "  dst_gap: shift\n  dst_fold: second\n  enabled: false\n"),
    ("schedule: {type: daily-interval, tz: Europe/London, start: '08:00', stop: '18:00', "
    "interval: 10m, calendar: Mon-Fri, dst_gap: skip}\n"),
    "schedule: {type: cron, expr: '0 9 * * Mon-Fri', tz: Australia/Lord_Howe}\n",
    "schedule: {type: cron, expr: '0 9 L * *', tz: UTC, calendar: Mon-Fri, dst_fold: second}\n",
    "schedule: {type: explicit, times: [2026-01-02T09:30:00Z, 2026-01-02T09:30:00.5+01:00]}\n",
    "schedule:\n  start: {type: interval, interval: 1d}\n  stop: {type: daytime, daytime: '17:00', tz: UTC}\n",
    "schedule:\n  start: {type: cron, expr: '0 * * * *', tz: UTC}\n  stop: {type: duration, duration: 30m}\n",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_to_jso_round_trips(text):
    s, diags = parse(text)
    assert not diags.items
    jso = s.to_jso()
    again = parse_jso(jso)
    assert again == s
    assert again.to_jso() == jso
    start = utc("2026-01-01T00:00:00Z")
    from .helpers import take
    assert take(again, start, 5) == take(s, start, 5)


def test_to_jso_has_type_and_every_key():
    s, _ = parse("schedule: {type: daily, tz: UTC, daytime: '09:00'}\n")
    assert set(s.to_jso()) == {
        "type", "enabled", "args", "jitter", "catchup", "tz", "dst_gap", "dst_fold",
        "daytime", "calendar", "date_shift", "cal_shift", "time_shift",
    }
    assert s.to_jso()["type"] == "daily"


# --- errors, located ---------------------------------------------------------------------

def test_unknown_key_has_hint_and_location():
    _s, diags = parse("schedule:\n  type: daily\n  tz: UTC\n  daytime: '09:00'\n  calender: all\n")
    [err] = diags.errors
    assert str(err.loc) == "job.yaml:5:3"
    assert "unknown key 'calender'" in err.message and "did you mean 'calendar'" in err.message


def test_misspelt_required_key_reports_both_the_missing_key_and_the_hint():
    s_text = "schedule:\n  type: daily\n  tz: UTC\n  daytme: '09:00'\n"
    from apsis.schedule import parse_schedule
    from apsis.yamlload import load_yaml

    from .helpers import make_ctx

    ctx = make_ctx()
    node = load_yaml(s_text, "job.yaml")
    with pytest.raises(JobError) as exc:
        parse_schedule(node["schedule"], node.loc_of("schedule"), ctx)
    assert exc.value.message == "daily schedule needs 'daytime'"
    assert str(exc.value.loc) == "job.yaml:2:3"
    [err] = ctx.diags.errors
    assert str(err.loc) == "job.yaml:4:3" and "did you mean 'daytime'" in err.message


def test_missing_required_key_is_located_at_the_mapping():
    err = error_of("schedule:\n  type: interval\n  phase: 10\n")
    assert err.message == "interval schedule needs 'interval'" and str(err.loc) == "job.yaml:2:3"
    err = error_of("schedule:\n  type: daily\n  daytime: '09:00'\n")
    assert "needs 'tz'" in err.message and str(err.loc) == "job.yaml:2:3"
    err = error_of("schedule:\n  type: cron\n  tz: UTC\n")
    assert "needs 'expr'" in err.message
    err = error_of("schedule: {interval: 10}\n")
    assert "needs 'type'" in err.message and str(err.loc) == "job.yaml:1:11"


def test_unknown_type_has_hint():
    err = error_of("schedule:\n  type: dayly\n  tz: UTC\n")
    assert "did you mean 'daily'" in err.message and str(err.loc) == "job.yaml:2:9"


def test_schedule_must_be_a_mapping():
    err = error_of("schedule:\n  - a\n")
    assert "must be a mapping" in err.message and str(err.loc) == "job.yaml:2:3"


@pytest.mark.parametrize("text, loc, words", [
    ("schedule:\n  type: interval\n  interval: forever\n", "3:13", "not a duration"),
    ("schedule:\n  type: interval\n  interval: 1h\n  jitter: -5\n", "4:11", "negative"),
    ("schedule:\n  type: interval\n  interval: 0\n", "3:13", "positive"),
    ("schedule:\n  type: interval\n  interval: 1h\n  phase: 2h\n", "4:10", "less than the interval"),
    ("schedule:\n  type: daily\n  tz: UTC\n  daytime: '09:00'\n  time_shift: soon\n", "5:15",
     "not a duration"),
    (("schedule:\n  type: daily-interval\n  tz: UTC\n  start: '9:00'\n  stop: '17:00'\n"
     "  interval: 1 fortnight\n"), "6:13", "not a duration"),
])
def test_bad_duration(text, loc, words):
    err = error_of(text)
    assert str(err.loc) == f"job.yaml:{loc}" and words in err.message


@pytest.mark.parametrize("text, loc", [
    ("schedule:\n  type: daily\n  tz: UTC\n  daytime: '25:00'\n", "4:12"),
    ("schedule:\n  type: daily\n  tz: UTC\n  daytime:\n    - '09:00'\n    - noon\n", "6:7"),
    ("schedule:\n  type: daily\n  tz: UTC\n  daytime: []\n", "4:12"),
    ("schedule:\n  type: daily-interval\n  tz: UTC\n  start: 9am\n  stop: '17:00'\n  interval: 1h\n",
     "4:10"),
    ("schedule:\n  start: {type: interval, interval: 1h}\n  stop: {type: daytime, daytime: '5pm', tz: UTC}\n",
     "3:34"),
])
def test_bad_daytime(text, loc):
    err = error_of(text)
    assert str(err.loc) == f"job.yaml:{loc}"
    assert "daytime" in err.message


def test_daily_interval_stop_must_be_after_start():
    err = error_of(
        "schedule:\n  type: daily-interval\n  tz: UTC\n  start: '17:00'\n  stop: '09:00'\n  interval: 1h\n"
    )
    assert "must be after start" in err.message and str(err.loc) == "job.yaml:5:9"


@pytest.mark.parametrize("tz, hint", [
    ("America/New_Yrok", "America/New_York"),
    ("europe/london", "Europe/London"),
    ("Nowhere/Atlantis", None),
])
def test_bad_tz_is_named_with_a_hint(tz, hint):
    err = error_of(f"schedule:\n  type: daily\n  daytime: '09:00'\n  tz: {tz}\n")
    assert str(err.loc) == "job.yaml:4:7"
    assert f"unknown time zone {tz!r}" in err.message
    if hint:
        assert f"did you mean {hint!r}" in err.message
    else:
        assert "did you mean" not in err.message


@pytest.mark.parametrize("expr, words", [
    ("61 * * * *", "not a valid cron expression"),
    ("* * * *", "five fields"),
    ("0 0 * * * 2026", "five fields"),
    ("0 9 * * Mon-Fru", "not a valid cron expression"),
    ("@reboot", "five fields"),
])
def test_bad_cron_is_located(expr, words):
    err = error_of(f"schedule:\n  type: cron\n  tz: UTC\n  expr: '{expr}'\n")
    assert str(err.loc) == "job.yaml:4:9" and words in err.message


@pytest.mark.parametrize("key, value, hint", [
    ("dst_gap", "later", None),
    ("dst_gap", "shfit", "shift"),
    ("dst_fold", "secnd", "second"),
    ("catchup", "latests", "latest"),
])
def test_bad_option_values(key, value, hint):
    err = error_of(f"schedule:\n  type: cron\n  tz: UTC\n  expr: '* * * * *'\n  {key}: {value}\n")
    assert str(err.loc) == f"job.yaml:5:{len(key) + 5}"
    assert err.message.startswith(f"{key}: must be one of")
    if hint:
        assert f"did you mean {hint!r}" in err.message


def test_dst_keys_only_on_local_schedules():
    _, diags = parse("schedule:\n  type: interval\n  interval: 1h\n  dst_gap: end\n")
    [err] = diags.errors
    assert "unknown key 'dst_gap'" in err.message and str(err.loc) == "job.yaml:4:3"


def test_bad_calendar_is_located():
    err = error_of("schedule:\n  type: daily\n  tz: UTC\n  daytime: '09:00'\n  calendar: Mon-Fro\n")
    assert str(err.loc) == "job.yaml:5:13" and "unknown calendar" in err.message


def test_bad_common_values():
    err = error_of("schedule:\n  type: interval\n  interval: 1h\n  enabled: yes\n")
    assert str(err.loc) == "job.yaml:4:12"
    err = error_of("schedule:\n  type: interval\n  interval: 1h\n  args: [a]\n")
    assert str(err.loc) == "job.yaml:4:9" and "mapping" in err.message


@pytest.mark.parametrize("value", ["2026-01-02T09:30:00", "2026-01-02", "now", "+1h", "tomorrow"])
def test_explicit_times_need_an_offset(value):
    err = error_of(f"schedule:\n  type: explicit\n  times:\n    - 2026-01-01T00:00:00Z\n    - '{value}'\n")
    assert str(err.loc) == "job.yaml:5:7" and "offset" in err.message


def test_start_stop_errors():
    err = error_of("schedule:\n  start: {type: interval, interval: 1h}\n  stop: {type: daytime, daytime: '17:00'}\n")
    assert "needs 'tz'" in err.message and str(err.loc) == "job.yaml:3:9"
    err = error_of("schedule:\n  start: {type: interval, interval: 1h}\n  stop: {type: duraton, duration: 1h}\n")
    assert "did you mean 'duration'" in err.message and str(err.loc) == "job.yaml:3:16"
    err = error_of("schedule:\n  start: {type: interval, interval: 1h}\n")
    assert "needs 'stop'" in err.message
    _, diags = parse(
        "schedule:\n  start: {type: interval, interval: 1h}\n  stop: {type: duration, duration: 1h}\n"
        "  stpo: 1\n"
    )
    [warn] = diags.errors
    assert "unknown key 'stpo'" in warn.message and str(warn.loc) == "job.yaml:4:3"

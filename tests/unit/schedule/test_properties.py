"""Property tests: the DST rule and ordering hold for random daytimes across transitions."""

from __future__ import annotations

import datetime as dt
import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from apsis.lib.timefmt import format_time
from apsis.schedule import parse_tz
from apsis.schedule.dst import localize

from .helpers import parse_jso

UTC = dt.UTC
SETTINGS = settings(max_examples=60, deadline=None)

TRANSITIONS = {
    "America/New_York": ["2023-03-12", "2023-11-05", "2024-03-10", "2024-11-03"],
    "Europe/London": ["2023-03-26", "2023-10-29", "2024-03-31", "2024-10-27"],
    "Australia/Lord_Howe": ["2023-04-02", "2023-10-01", "2024-04-07", "2024-10-06"],
}
ZONE_DATES = [(tz, d) for tz, dates in TRANSITIONS.items() for d in dates]

# Daytimes near the small hours, where transitions happen, most of the time.
hours = st.one_of(st.integers(0, 3), st.integers(0, 23))
daytimes = st.builds(
    dt.time, hours, st.sampled_from([0, 15, 29, 30, 31, 45, 59]) | st.integers(0, 59),
    st.sampled_from([0, 0, 0, 30]),
)


@st.composite
def windows(draw):
    """A zone, a run of local dates around one of its transitions, and DST options."""
    tz, date = draw(st.sampled_from(ZONE_DATES))
    first = dt.date.fromisoformat(date) - dt.timedelta(days=draw(st.integers(0, 3)))
    last = first + dt.timedelta(days=draw(st.integers(0, 6)))
    gap = draw(st.sampled_from(["end", "shift", "skip"]))
    fold = draw(st.sampled_from(["first", "second"]))
    return tz, first, last, gap, fold


def expected_time(date: dt.date, daytime: dt.time, tz_name: str, gap: str, fold: str):
    """The DST rule computed by brute force: which instants show this wall time?"""
    tz = parse_tz(tz_name)
    wall = dt.datetime.combine(date, daytime)

    def wall_at(u: dt.datetime) -> dt.datetime:
        return u.astimezone(tz).replace(tzinfo=None)

    probe = wall.replace(tzinfo=UTC)
    offsets = {wall_at(probe + dt.timedelta(hours=h)) - (probe + dt.timedelta(hours=h)).replace(tzinfo=None)
               for h in range(-36, 37)}
    hits = sorted({(wall - o).replace(tzinfo=UTC) for o in offsets
                   if wall_at((wall - o).replace(tzinfo=UTC)) == wall})
    if hits:
        return (hits[0] if fold == "first" or len(hits) == 1 else hits[1]), False
    # A gap: the end is the first (whole-minute) instant that shows a later wall time.
    u = (wall - max(offsets)).replace(tzinfo=UTC, second=0, microsecond=0)
    while wall_at(u) <= wall:
        u += dt.timedelta(minutes=1)
    if gap == "shift":
        before = wall_at(u - dt.timedelta(seconds=1)) - (u - dt.timedelta(seconds=1)).replace(tzinfo=None)
        return (wall - before).replace(tzinfo=UTC), False
    return u, gap == "skip"


def runs_for(schedule, first: dt.date, last: dt.date, start: dt.datetime | None = None):
    """Every run from well before `first` until well after `last`."""
    start = start or dt.datetime.combine(first - dt.timedelta(days=1), dt.time(), UTC)
    stop = dt.datetime.combine(last + dt.timedelta(days=3), dt.time(), UTC)
    return list(itertools.takewhile(lambda r: r.time < stop, schedule.times(start)))


def check_stream(runs, schedule, first, last, wanted, tz, gap, fold):
    """One run per wanted (date, daytime), each where the rule says, in order."""
    got = [(r.args["date"], r.args["daytime"]) for r in runs
           if first.isoformat() <= r.args["date"] <= last.isoformat()]
    assert len(got) == len(set(got)), "a (date, daytime) ran twice"
    assert set(got) == wanted
    for a, b in itertools.pairwise(runs):
        assert a.time <= b.time
        if a.time == b.time:
            # Only wall times that do not exist can share an instant, in (date, daytime) order.
            assert (a.args["date"], a.args["daytime"]) < (b.args["date"], b.args["daytime"])
    for run in runs:
        date = dt.date.fromisoformat(run.args["date"])
        daytime = dt.time.fromisoformat(run.args["daytime"])
        time, skipped = expected_time(date, daytime, tz, gap, fold)
        assert run.time == time, (run.args, run.time, time)
        assert (run.skip_reason is not None) == skipped
        assert run.args["time"] == format_time(run.time)


@SETTINGS
@given(windows(), st.lists(daytimes, min_size=1, max_size=4), st.sampled_from(["all", "Mon-Fri"]))
def test_daily_one_run_per_date_and_daytime(window, times, calendar):
    tz, first, last, gap, fold = window
    schedule = parse_jso({"type": "daily", "tz": tz, "daytime": [t.isoformat() for t in times],
                          "calendar": calendar, "dst_gap": gap, "dst_fold": fold})
    runs = runs_for(schedule, first, last)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    admitted = [d for d in days if calendar == "all" or d.weekday() < 5]
    wanted = {(d.isoformat(), t.isoformat()) for d in admitted for t in times}
    check_stream(runs, schedule, first, last, wanted, tz, gap, fold)


@SETTINGS
@given(
    windows(),
    st.sets(st.integers(0, 59), min_size=1, max_size=3),
    st.sets(hours, min_size=1, max_size=3),
    st.sampled_from([("*", range(7)), ("Mon-Fri", range(5)), ("Sun", [6]), ("Sat,Sun", [5, 6])]),
)
def test_cron_one_run_per_date_and_daytime(window, minutes, hours_, dow):
    tz, first, last, gap, fold = window
    dow_text, weekdays = dow
    expr = f"{','.join(map(str, sorted(minutes)))} {','.join(map(str, sorted(hours_)))} * * {dow_text}"
    schedule = parse_jso({"type": "cron", "expr": expr, "tz": tz, "dst_gap": gap, "dst_fold": fold})
    runs = runs_for(schedule, first, last)
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    wanted = {(d.isoformat(), dt.time(h, m).isoformat())
              for d in days if d.weekday() in weekdays for h in hours_ for m in minutes}
    check_stream(runs, schedule, first, last, wanted, tz, gap, fold)


@SETTINGS
@given(windows(), st.lists(daytimes, min_size=1, max_size=3), st.integers(0, 7 * 24 * 60))
def test_a_later_start_yields_the_tail_of_the_same_stream(window, times, minutes):
    # What a restart sees from `start` is exactly the runs at or after `start`.
    tz, first, last, gap, fold = window
    schedule = parse_jso({"type": "daily", "tz": tz, "daytime": [t.isoformat() for t in times],
                          "dst_gap": gap, "dst_fold": fold})
    everything = runs_for(schedule, first, last)
    start = dt.datetime.combine(first - dt.timedelta(days=1), dt.time(), UTC) + dt.timedelta(minutes=minutes)
    assert runs_for(schedule, first, last, start) == [r for r in everything if r.time >= start]


@SETTINGS
@given(
    st.integers(1, 3 * 86_400_000),
    st.floats(0, 1, exclude_max=True),
    st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(UTC)),
)
def test_interval_times_are_strictly_increasing_and_aligned(interval_ms, phase_frac, start):
    interval = interval_ms / 1000
    phase = int(interval_ms * phase_frac) / 1000
    schedule = parse_jso({"type": "interval", "interval": interval, "phase": phase})
    runs = list(itertools.islice(schedule.times(start), 30))
    epoch = dt.datetime(1970, 1, 1, tzinfo=UTC)
    step = dt.timedelta(milliseconds=interval_ms)
    assert runs[0].time >= start > runs[0].time - step
    for a, b in itertools.pairwise(runs):
        assert b.time - a.time == step
    for run in runs:
        assert (run.time - epoch - dt.timedelta(seconds=phase)) % step == dt.timedelta(0)
        assert run.args["time"] == format_time(run.time)


@SETTINGS
@given(st.sampled_from(sorted(TRANSITIONS)), st.dates(dt.date(2020, 1, 1), dt.date(2030, 12, 31)),
       daytimes, st.sampled_from(["end", "shift", "skip"]), st.sampled_from(["first", "second"]))
def test_localize_matches_brute_force_on_any_date(tz, date, daytime, gap, fold):
    loc = localize(date, daytime, parse_tz(tz), gap, fold)
    assert (loc.time, loc.skip_reason is not None) == expected_time(date, daytime, tz, gap, fold)


# Zones far from UTC, and Samoa's day that never was (2011-12-30: clocks jumped from
# 23:59:59 on the 29th to 00:00 on the 31st), where wall times and instants part most.
FAR = {"Pacific/Apia": ["2011-12-29", "2012-03-31", "2012-09-29"],
       "Pacific/Kiritimati": ["2024-06-01"], "Pacific/Pago_Pago": ["2024-06-01"]}
FAR_ZONE_DATES = ZONE_DATES + [(tz, d) for tz, dates in FAR.items() for d in dates]


@st.composite
def local_schedules(draw):
    """A daily (maybe shifted), cron or daily-interval schedule (maybe over midnight) in
    a zone around one of its transitions, under any DST options; and that date."""
    tz, date = draw(st.sampled_from(FAR_ZONE_DATES))
    dst = {"tz": tz, "dst_gap": draw(st.sampled_from(["end", "shift", "skip"])),
           "dst_fold": draw(st.sampled_from(["first", "second"]))}
    kind = draw(st.sampled_from(["daily", "cron", "daily-interval"]))
    if kind == "daily":
        jso = {"type": "daily", "daytime": [t.isoformat() for t in draw(st.lists(daytimes, min_size=1, max_size=4))],
               "date_shift": draw(st.sampled_from([0, 0, -1, 1])),
               "time_shift": draw(st.sampled_from([0, 0, 1800, 86400 + 3600]))}
    elif kind == "cron":
        minutes = draw(st.sets(st.integers(0, 59), min_size=1, max_size=3))
        hours_ = draw(st.sets(hours, min_size=1, max_size=3))
        jso = {"type": "cron", "expr": f"{','.join(map(str, sorted(minutes)))} "
                                       f"{','.join(map(str, sorted(hours_)))} * * *"}
    else:
        start = draw(daytimes)
        stop = draw(daytimes.filter(lambda t: t > start)) if draw(st.booleans()) else None
        jso = {"type": "daily-interval", "start": start.isoformat(),
               "stop": (stop.isoformat() if stop else
                        {"daytime": draw(daytimes).isoformat(), "date_shift": 1}),
               "interval": draw(st.sampled_from([600, 1800, 3600, 5400]))}
    return parse_jso({**jso, **dst}), dt.date.fromisoformat(date)


@settings(max_examples=150, deadline=None)
@given(local_schedules(), st.integers(-3 * 24 * 60, 3 * 24 * 60), st.integers(0, 10**6),
       st.sampled_from([None, 0, -1]))
def test_any_start_yields_the_tail_of_the_same_stream(schedule_date, minutes, pick, nudge):
    # Whatever a restart starts from, even far from UTC or next to a lost day, it sees
    # exactly the runs at or after its start (times() skips wall times before it): from
    # any minute, or from a run's own instant (or just before it).
    schedule, date = schedule_date
    first = dt.datetime.combine(date - dt.timedelta(days=4), dt.time(), UTC)
    stop = dt.datetime.combine(date + dt.timedelta(days=5), dt.time(), UTC)
    everything = list(itertools.takewhile(lambda r: r.time < stop, schedule.times(first)))
    start = dt.datetime.combine(date, dt.time(12), UTC) + dt.timedelta(minutes=minutes)
    if nudge is not None and everything:
        start = everything[pick % len(everything)].time + dt.timedelta(microseconds=nudge)
    tail = list(itertools.takewhile(lambda r: r.time < stop, schedule.times(start)))
    assert tail == [r for r in everything if r.time >= start]


@SETTINGS
@given(local_schedules(), st.integers(-2 * 24 * 60, 2 * 24 * 60), st.integers(0, 3 * 24 * 60))
def test_most_runs_bounds_the_runs_of_any_window(schedule_date, minutes, span_minutes):
    # The scheduler trusts it not to count a schedule's runs up to its horizon.
    schedule, date = schedule_date
    span = dt.timedelta(minutes=span_minutes)
    start = dt.datetime.combine(date, dt.time(12), UTC) + dt.timedelta(minutes=minutes)
    runs = list(itertools.takewhile(lambda r: r.time < start + span, schedule.times(start)))
    most = schedule.most_runs(span)
    assert most is None or len(runs) <= most
    if schedule.to_jso().get("type") != "daily-interval" or isinstance(
            schedule.to_jso()["stop"], str):
        assert most is not None  # only an interval over midnight is left unknown


@SETTINGS
@given(
    st.integers(1, 3 * 86_400_000),
    st.integers(0, 999),
    st.datetimes(dt.datetime(1970, 1, 1), dt.datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.integers(0, 300_000),
)
def test_most_runs_bounds_an_interval_and_a_list(interval_ms, phase_permille, start, span_permille):
    interval = parse_jso({"type": "interval", "interval": interval_ms / 1000,
                          "phase": interval_ms * phase_permille // 1000 / 1000})
    span = dt.timedelta(milliseconds=interval_ms) * span_permille / 1000  # up to 300 runs
    runs = list(itertools.takewhile(lambda r: r.time < start + span, interval.times(start)))
    assert len(runs) <= interval.most_runs(span) <= len(runs) + 1
    times = [format_time(r.time) for r in itertools.islice(interval.times(start), 5)]
    explicit = parse_jso({"type": "explicit", "times": times})
    assert len(list(itertools.takewhile(lambda r: r.time < start + span,
                                        explicit.times(start)))) <= explicit.most_runs(span)

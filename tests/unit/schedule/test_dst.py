"""The DST rule (SPEC §1.2) for daily, daily-interval and cron, in three zones.

2024 transitions:
  America/New_York     spring 03-10 02:00→03:00   autumn 11-03 02:00→01:00
  Europe/London        spring 03-31 01:00→02:00   autumn 10-27 02:00→01:00
  Australia/Lord_Howe  spring 10-06 02:00→02:30   autumn 04-07 02:00→01:30 (30-minute shift)
"""

from __future__ import annotations

import datetime as dt
import itertools
from dataclasses import dataclass

import pytest

from apsis.schedule.dst import localize, parse_tz

from .helpers import local, parse, until


@dataclass(frozen=True)
class Zone:
    tz: str
    spring: str       # the date clocks jump forward
    gap_time: str     # a wall time inside the gap
    end: str          # where `dst_gap: end` puts it
    shift: str        # where `dst_gap: shift` puts it
    jump: str         # "HH:MM to HH:MM" as the skip reason says
    autumn: str       # the date clocks go back
    fold_time: str    # a wall time that happens twice
    first: str        # its first occurrence
    second: str       # its second occurrence


ZONES = [
    Zone("America/New_York", "2024-03-10", "02:30", "2024-03-10T03:00:00-04:00",
         "2024-03-10T03:30:00-04:00", "02:00 to 03:00",
         "2024-11-03", "01:30", "2024-11-03T01:30:00-04:00", "2024-11-03T01:30:00-05:00"),
    Zone("Europe/London", "2024-03-31", "01:30", "2024-03-31T02:00:00+01:00",
         "2024-03-31T02:30:00+01:00", "01:00 to 02:00",
         "2024-10-27", "01:30", "2024-10-27T01:30:00+01:00", "2024-10-27T01:30:00+00:00"),
    Zone("Australia/Lord_Howe", "2024-10-06", "02:15", "2024-10-06T02:30:00+11:00",
         "2024-10-06T02:45:00+11:00", "02:00 to 02:30",
         "2024-04-07", "01:45", "2024-04-07T01:45:00+11:00", "2024-04-07T01:45:00+10:30"),
]
IDS = [z.tz for z in ZONES]


def days_around(date: str) -> tuple[str, str]:
    """A UTC window from two days before `date` to two days after."""
    d = dt.date.fromisoformat(date)
    return f"{d - dt.timedelta(days=2)}T00:00:00+00:00", f"{d + dt.timedelta(days=3)}T00:00:00+00:00"


def runs_on(runs, date: str):
    return [r for r in runs if r.args["date"] == date]


def daily(zone: Zone, daytime: str, extra: str = ""):
    s, diags = parse(f"schedule: {{type: daily, tz: {zone.tz}, daytime: '{daytime}'{extra}}}\n")
    assert not diags.items
    return s


# --- localize ------------------------------------------------------------------------

@pytest.mark.parametrize("zone", ZONES, ids=IDS)
def test_localize_gap_and_fold(zone):
    tz = parse_tz(zone.tz)
    spring, autumn = dt.date.fromisoformat(zone.spring), dt.date.fromisoformat(zone.autumn)
    gap_time, fold_time = dt.time.fromisoformat(zone.gap_time), dt.time.fromisoformat(zone.fold_time)

    def at(date, daytime, **kw):
        return localize(date, daytime, tz, **kw).time.astimezone(tz).isoformat()

    assert at(spring, gap_time) == zone.end
    assert at(spring, gap_time, gap="shift") == zone.shift
    skipped = localize(spring, gap_time, tz, gap="skip")
    assert skipped.time.astimezone(tz).isoformat() == zone.end
    assert skipped.skip_reason and zone.jump in skipped.skip_reason and zone.tz in skipped.skip_reason
    assert at(autumn, fold_time) == zone.first
    assert at(autumn, fold_time, fold="second") == zone.second
    # An ordinary time is untouched by every option.
    for gap in ("end", "shift", "skip"):
        for fold in ("first", "second"):
            assert localize(spring, dt.time(12), tz, gap, fold).skip_reason is None
            assert at(spring, dt.time(12), gap=gap, fold=fold).startswith(f"{zone.spring}T12:00:00")


# --- daily ---------------------------------------------------------------------------

@pytest.mark.parametrize("zone", ZONES, ids=IDS)
@pytest.mark.parametrize("gap", ["end", "shift", "skip", None])
def test_daily_spring_gap(zone, gap):
    option = f", dst_gap: {gap}" if gap else ""
    s = daily(zone, zone.gap_time, option)
    runs = until(s, *days_around(zone.spring))
    assert [r.args["date"] for r in runs] == sorted({r.args["date"] for r in runs})  # one a day
    assert len(runs) == 5
    [run] = runs_on(runs, zone.spring)
    assert run.args["daytime"] == f"{zone.gap_time}:00"
    expected = zone.shift if gap == "shift" else zone.end
    assert local(run, zone.tz) == expected
    assert run.args["time"] == run.time.strftime("%Y-%m-%dT%H:%M:%SZ")
    if gap == "skip":
        assert run.skip_reason and zone.jump in run.skip_reason
    else:
        assert run.skip_reason is None
    # Other days run at the nominal wall time.
    for other in runs:
        if other is not run:
            assert local(other, zone.tz)[11:16] == zone.gap_time and other.skip_reason is None


@pytest.mark.parametrize("zone", ZONES, ids=IDS)
@pytest.mark.parametrize("fold", ["first", "second", None])
def test_daily_autumn_fold(zone, fold):
    option = f", dst_fold: {fold}" if fold else ""
    s = daily(zone, zone.fold_time, option)
    runs = until(s, *days_around(zone.autumn))
    assert len(runs) == 5
    [run] = runs_on(runs, zone.autumn)
    assert local(run, zone.tz) == (zone.second if fold == "second" else zone.first)
    assert run.args["daytime"] == f"{zone.fold_time}:00" and run.skip_reason is None


@pytest.mark.parametrize("zone", ZONES, ids=IDS)
def test_daily_started_between_the_two_occurrences_of_a_fold_time(zone):
    # A restart inside the fold must not run the first-occurrence time again...
    first = dt.datetime.fromisoformat(zone.first)
    s = daily(zone, zone.fold_time)
    runs = until(s, first + dt.timedelta(minutes=1), first + dt.timedelta(days=2))
    assert [r.args["date"] for r in runs] == [str(first.date() + dt.timedelta(days=1))]
    # ... and with `second`, a start at the first occurrence still gets the second.
    s = daily(zone, zone.fold_time, ", dst_fold: second")
    [run] = until(s, first, first + dt.timedelta(hours=2))
    assert local(run, zone.tz) == zone.second


# --- daily-interval and cron: every wall time in and around the transitions -----------

def quarter_hours_to_four() -> list[str]:
    return [f"{h:02d}:{m:02d}:00" for h in range(4) for m in (0, 15, 30, 45)]


def interval_and_cron(zone: Zone, option: str):
    di, d1 = parse(
        f"schedule: {{type: daily-interval, tz: {zone.tz}, start: '00:00', stop: '04:00', "
        f"interval: 15m{option}}}\n"
    )
    cr, d2 = parse(f"schedule: {{type: cron, expr: '*/15 0-3 * * *', tz: {zone.tz}{option}}}\n")
    assert not d1.items and not d2.items
    return [di, cr]


def gap_daytimes(zone: Zone) -> list[str]:
    """The quarter hours that do not exist on the spring date."""
    start, stop = zone.jump.split(" to ")
    return [t for t in quarter_hours_to_four() if start <= t[:5] < stop]


@pytest.mark.parametrize("zone", ZONES, ids=IDS)
@pytest.mark.parametrize("gap", ["end", "shift", "skip"])
def test_interval_and_cron_spring_gap(zone, gap):
    for s in interval_and_cron(zone, f", dst_gap: {gap}"):
        runs = runs_on(until(s, *days_around(zone.spring)), zone.spring)
        # Exactly one run per daytime, gap or not.
        assert sorted(r.args["daytime"] for r in runs) == quarter_hours_to_four()
        times = [r.time for r in runs]
        assert times == sorted(times)
        missing = gap_daytimes(zone)
        assert missing
        for run in runs:
            wall = local(run, zone.tz)
            daytime = run.args["daytime"]
            if daytime not in missing:
                assert wall[11:19] == daytime and run.skip_reason is None
            elif gap == "shift":
                nominal = dt.datetime.fromisoformat(f"{zone.spring}T{daytime}")
                size = parse_tz(zone.tz).utcoffset(nominal + dt.timedelta(hours=6)) - \
                    parse_tz(zone.tz).utcoffset(nominal - dt.timedelta(hours=6))
                assert wall[11:19] == (nominal + size).time().isoformat()
            else:
                assert wall == zone.end
                assert (run.skip_reason is not None) == (gap == "skip")
        # Runs that share an instant come in daytime order.
        for a, b in itertools.pairwise(runs):
            if a.time == b.time:
                assert a.args["daytime"] < b.args["daytime"]


@pytest.mark.parametrize("zone", ZONES, ids=IDS)
@pytest.mark.parametrize("fold", ["first", "second"])
def test_interval_and_cron_autumn_fold(zone, fold):
    tz = parse_tz(zone.tz)
    for s in interval_and_cron(zone, f", dst_fold: {fold}"):
        runs = runs_on(until(s, *days_around(zone.autumn)), zone.autumn)
        assert [r.args["daytime"] for r in runs] == quarter_hours_to_four()  # once each, in order
        assert all(a.time < b.time for a, b in itertools.pairwise(runs))
        for run in runs:
            wall = run.time.astimezone(tz)
            assert wall.time().isoformat() == run.args["daytime"]
            ambiguous = dt.datetime.fromisoformat(f"{zone.autumn}T{run.args['daytime']}")
            offsets = {ambiguous.replace(tzinfo=tz, fold=f).utcoffset() for f in (0, 1)}
            if len(offsets) == 2:
                assert wall.fold == (1 if fold == "second" else 0)


def test_cron_does_not_double_fire_in_the_fold():
    # croniter's own iteration fires 01:30 twice on this date; we must not.
    s, _ = parse("schedule: {type: cron, expr: '30 1 * * *', tz: America/New_York}\n")
    runs = until(s, "2024-11-03T00:00:00-04:00", "2024-11-04T00:00:00-05:00")
    assert [local(r, "America/New_York") for r in runs] == ["2024-11-03T01:30:00-04:00"]


def test_cron_runs_once_in_the_gap():
    s, _ = parse("schedule: {type: cron, expr: '30 2 * * *', tz: America/New_York}\n")
    runs = until(s, "2024-03-09T12:00:00-05:00", "2024-03-11T12:00:00-04:00")
    assert [local(r, "America/New_York") for r in runs] == [
        "2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"]


def test_daily_two_gap_daytimes_land_on_one_instant_in_daytime_order():
    s, _ = parse(
        "schedule: {type: daily, tz: America/New_York, daytime: ['02:45', '02:15', '03:00']}\n"
    )
    runs = runs_on(until(s, *days_around("2024-03-10")), "2024-03-10")
    assert [r.args["daytime"] for r in runs] == ["02:15:00", "02:45:00", "03:00:00"]
    assert {local(r, "America/New_York") for r in runs} == {"2024-03-10T03:00:00-04:00"}


def test_daily_shift_reorders_by_instant():
    # 02:30 shifted is 03:30 EDT, after 03:15 EDT: runs stay in time order.
    s, _ = parse(
        "schedule: {type: daily, tz: America/New_York, daytime: ['02:30', '03:15'], dst_gap: shift}\n"
    )
    runs = runs_on(until(s, *days_around("2024-03-10")), "2024-03-10")
    assert [(r.args["daytime"], local(r, "America/New_York")) for r in runs] == [
        ("03:15:00", "2024-03-10T03:15:00-04:00"), ("02:30:00", "2024-03-10T03:30:00-04:00")]


def test_gap_at_midnight():
    # America/Havana springs forward 00:00→01:00: the date still gets its run.
    s, _ = parse("schedule: {type: daily, tz: America/Havana, daytime: '00:30'}\n")
    runs = runs_on(until(s, *days_around("2024-03-10")), "2024-03-10")
    assert [local(r, "America/Havana") for r in runs] == ["2024-03-10T01:00:00-04:00"]


@pytest.mark.parametrize("gap", ["end", "shift", "skip"])
def test_a_skipped_day(gap):
    # Pacific/Apia skipped 2011-12-30 entirely: its runs land at the end of the gap
    # (or a day later, shifted), each (date, daytime) once, and before the next
    # date's runs at the same instant.
    s, _ = parse(
        f"schedule: {{type: daily, tz: Pacific/Apia, daytime: ['00:00', '12:00'], dst_gap: {gap}}}\n"
    )
    runs = until(s, "2011-12-28T00:00:00Z", "2012-01-02T00:00:00Z")
    seen = [(r.args["date"], r.args["daytime"]) for r in runs]
    assert len(seen) == len(set(seen))
    assert ("2011-12-30", "00:00:00") in seen and ("2011-12-30", "12:00:00") in seen
    for a, b in itertools.pairwise(runs):
        assert a.time < b.time or (
            a.time == b.time and (a.args["date"], a.args["daytime"]) < (b.args["date"], b.args["daytime"]))
    assert [r.skip_reason is not None for r in runs].count(True) == (2 if gap == "skip" else 0)

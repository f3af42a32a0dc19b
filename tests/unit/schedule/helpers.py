"""Shared helpers: parse a schedule from YAML text against small stand-in calendars."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Any

from apsis.calendar.base import Calendar
from apsis.errors import Diagnostics
from apsis.parse_context import ParseContext
from apsis.schedule import Schedule, ScheduledRun, parse_schedule, parse_schedules
from apsis.yamlload import load_yaml

UTC = dt.UTC
PATH = "job.yaml"


class WeekdayCalendar(Calendar):
    """The calendar module is built elsewhere; schedules only need `contains_date`."""

    def __init__(self, name: str, weekdays: set[int], holidays: set[dt.date] = frozenset()) -> None:
        self.name = name
        self.weekdays = weekdays
        self.holidays = holidays

    def contains_date(self, date: dt.date) -> bool:
        return date.weekday() in self.weekdays and date not in self.holidays


class EmptyCalendar(Calendar):
    name = "never"

    def contains_date(self, date: dt.date) -> bool:
        return False


CALENDARS: dict[str, Calendar] = {
    "all": WeekdayCalendar("all", set(range(7))),
    "Mon-Fri": WeekdayCalendar("Mon-Fri", set(range(5))),
    # 2024-07-04 (Thu) and 2024-07-05 (Fri) off.
    "bank": WeekdayCalendar("bank", set(range(5)), {dt.date(2024, 7, 4), dt.date(2024, 7, 5)}),
    "never": EmptyCalendar(),
}


def get_calendar(name: str) -> Calendar:
    if name not in CALENDARS:
        raise ValueError(f"unknown calendar {name!r}")
    return CALENDARS[name]


def make_ctx() -> ParseContext:
    return ParseContext(diags=Diagnostics(), get_calendar=get_calendar)


def parse(text: str) -> tuple[Schedule, Diagnostics]:
    """The schedule under the top-level key `schedule`, and what was reported."""
    ctx = make_ctx()
    node = load_yaml(text, PATH)
    return parse_schedule(node["schedule"], node.loc_of("schedule"), ctx), ctx.diags


def parse_many(text: str) -> tuple[list[Schedule], Diagnostics]:
    ctx = make_ctx()
    node = load_yaml(text, PATH)
    return parse_schedules(node["schedule"], node.loc_of("schedule"), ctx), ctx.diags


def parse_jso(jso: dict[str, Any]) -> Schedule:
    ctx = make_ctx()
    schedule = parse_schedule(jso, None, ctx)
    assert not ctx.diags.items, ctx.diags.items
    return schedule


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).astimezone(UTC)


def take(schedule: Schedule, start: dt.datetime | str, n: int) -> list[ScheduledRun]:
    if isinstance(start, str):
        start = utc(start)
    return list(itertools.islice(schedule.times(start), n))


def until(schedule: Schedule, start: dt.datetime | str, stop: dt.datetime | str) -> list[ScheduledRun]:
    start = utc(start) if isinstance(start, str) else start
    stop = utc(stop) if isinstance(stop, str) else stop
    return list(itertools.takewhile(lambda r: r.time < stop, schedule.times(start)))


def local(run: ScheduledRun, tz: str) -> str:
    """The run's instant as local wall time with its offset, for readable asserts."""
    from zoneinfo import ZoneInfo

    return run.time.astimezone(ZoneInfo(tz)).isoformat()

"""`daily-interval`: every so often between two local daytimes, on calendar dates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import JobError
from ..lib.strict import Fields
from ..lib.timefmt import format_daytime, parse_daytime, parse_duration
from .base import SCHEDULES, LocalSchedule, WallTime, local_dates
from .daily import daytime_jso, parse_calendar
from .dst import parse_tz

if TYPE_CHECKING:
    from ..calendar.base import Calendar

_DAY_MICROS = 86_400_000_000


def _micros_of(daytime: dt.time) -> int:
    return ((daytime.hour * 60 + daytime.minute) * 60 + daytime.second) * 1_000_000 + daytime.microsecond


def _daytime_of(micros: int) -> dt.time:
    seconds, micro = divmod(micros, 1_000_000)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    return dt.time(hour, minute, second, micro)


@SCHEDULES.register("daily-interval")
@dataclass(kw_only=True)
class DailyIntervalSchedule(LocalSchedule):
    """Wall times `start, start + interval, ...` before `stop` on each calendar date.

    The grid is of wall-clock daytimes, so it is the same every date, DST or not.
    """

    KEYS = (*LocalSchedule.LOCAL_KEYS, "start", "stop", "interval", "calendar")

    start: dt.time
    stop: dt.time
    interval: float
    calendar_name: str = "all"
    calendar: Calendar = field(compare=False, repr=False)

    @classmethod
    def from_fields(cls, f: Fields, ctx: Any, common: dict[str, Any]) -> DailyIntervalSchedule:
        tz = f.require("tz", parse_tz)
        start = f.require("start", parse_daytime)
        stop = f.require("stop", parse_daytime)
        if stop <= start:
            raise JobError(
                f"stop ({format_daytime(stop)}) must be after start ({format_daytime(start)})",
                f.loc_of("stop"),
            )
        interval = f.require("interval", parse_duration)
        if round(interval * 1_000_000) <= 0:
            raise JobError("interval must be positive", f.loc_of("interval"))
        name, calendar = parse_calendar(f, ctx)
        return cls(
            tz=tz, start=start, stop=stop, interval=interval,
            calendar_name=name or "all", calendar=calendar,
            **cls.parse_dst(f), **common,
        )

    def daytimes(self) -> list[dt.time]:
        step = round(self.interval * 1_000_000)
        stop = _micros_of(self.stop)
        return [_daytime_of(m) for m in range(_micros_of(self.start), min(stop, _DAY_MICROS), step)]

    def wall_times(self, first: dt.date) -> Iterator[list[WallTime]]:
        daytimes = [(d, format_daytime(d)) for d in self.daytimes()]
        tz = self.tz.key
        for date in local_dates(first):
            if not self.calendar.contains_date(date):
                yield []
                continue
            provided = {"date": date.isoformat(), "calendar": self.calendar_name, "tz": tz}
            yield [WallTime(date, d, {**provided, "daytime": text}) for d, text in daytimes]

    def to_jso(self) -> dict[str, Any]:
        return {
            **self.common_jso(),
            **self.dst_jso(),
            "start": daytime_jso(self.start),
            "stop": daytime_jso(self.stop),
            "interval": self.interval,
            "calendar": self.calendar_name,
        }

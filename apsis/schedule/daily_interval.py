"""`daily-interval`: every so often between two local daytimes, on calendar dates."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import JobError
from ..lib.strict import Fields, as_int
from ..lib.timefmt import format_daytime, parse_daytime, parse_duration
from .base import SCHEDULES, LocalSchedule, WallTime, local_dates
from .daily import daytime_jso, parse_calendar
from .dst import parse_tz

if TYPE_CHECKING:
    from ..calendar.base import Calendar


@dataclass(frozen=True, slots=True)
class DaytimeSpec:
    """`start` or `stop` of a daily interval: a daytime, on the schedule's date moved by
    `cal_shift` calendar dates then `date_shift` days (Apsis's mapping form)."""

    daytime: dt.time
    date_shift: int = 0
    cal_shift: int = 0

    @classmethod
    def parse(cls, f: Fields, key: str) -> DaytimeSpec:
        value = f.require(key)
        if not isinstance(value, dict):
            return cls(f.convert(key, value, parse_daytime))
        sf = Fields(value, key, f.diags, f.loc_of(key))
        try:
            return cls(sf.require("daytime", parse_daytime), sf.get("date_shift", 0, as_int),
                       sf.get("cal_shift", 0, as_int))
        finally:
            sf.done()

    @property
    def shifted(self) -> bool:
        return bool(self.date_shift or self.cal_shift)

    def on(self, date: dt.date, calendar: Calendar) -> dt.datetime:
        """The wall-clock time of this spec for the schedule's date `date`."""
        day = calendar.shift_date(date, self.cal_shift) + dt.timedelta(days=self.date_shift)
        return dt.datetime.combine(day, self.daytime)

    def to_jso(self) -> str | dict[str, Any]:
        if not self.shifted:
            return daytime_jso(self.daytime)
        return {"daytime": daytime_jso(self.daytime), "date_shift": self.date_shift,
                "cal_shift": self.cal_shift}

    def __str__(self) -> str:
        shifts = [f"{n:+d} {unit}" for n, unit in ((self.cal_shift, "cal days"),
                                                     (self.date_shift, "days")) if n]
        return " ".join([format_daytime(self.daytime), *shifts])


@SCHEDULES.register("daily-interval")
@dataclass(kw_only=True)
class DailyIntervalSchedule(LocalSchedule):
    """Wall times `start, start + interval, ...` before `stop`, for each calendar date.

    The grid is of wall-clock times, so it is the same every date, DST or not. `start`
    and `stop` may be on other dates than the schedule's own (Apsis's `{daytime,
    date_shift, cal_shift}`), so an interval can span midnight; the `date` arg is still
    the schedule's date, and `sched_date` (as in Apsis) the date the run falls on.
    """

    KEYS = (*LocalSchedule.LOCAL_KEYS, "start", "stop", "interval", "calendar")

    start: DaytimeSpec
    stop: DaytimeSpec
    interval: float
    calendar_name: str = "all"
    calendar: Calendar = field(compare=False, repr=False)

    @classmethod
    def from_fields(cls, f: Fields, ctx: Any, common: dict[str, Any]) -> DailyIntervalSchedule:
        tz = f.require("tz", parse_tz)
        start = DaytimeSpec.parse(f, "start")
        stop = DaytimeSpec.parse(f, "stop")
        # With the same shifts, the order is known now; else it is per date.
        same_day = (start.date_shift, start.cal_shift) == (stop.date_shift, stop.cal_shift)
        if same_day and stop.daytime <= start.daytime:
            raise JobError(f"stop ({stop}) must be after start ({start})", f.loc_of("stop"))
        interval = f.require("interval", parse_duration)
        if round(interval * 1_000_000) <= 0:
            raise JobError("interval must be positive", f.loc_of("interval"))
        name, calendar = parse_calendar(f, ctx)
        return cls(
            tz=tz, start=start, stop=stop, interval=interval,
            calendar_name=name or "all", calendar=calendar,
            **cls.parse_dst(f), **common,
        )

    def wall_times(self, first: dt.date) -> Iterator[list[WallTime]]:
        cal = self.calendar
        step = dt.timedelta(microseconds=round(self.interval * 1_000_000))
        # A date's interval may begin or end days after it: start early enough.
        back = max(0, self.start.date_shift, self.stop.date_shift)
        cal_back = max(0, self.start.cal_shift, self.stop.cal_shift)
        try:
            nominal = first - dt.timedelta(days=back)
            if cal_back:
                nominal = cal.shift_date(nominal, -cal_back)
        except (ValueError, OverflowError):  # a calendar with no dates: no runs
            return
        tz = self.tz.key
        for date in local_dates(nominal):
            if not cal.contains_date(date):
                yield []
                continue
            try:
                time, end = self.start.on(date, cal), self.stop.on(date, cal)
            except (ValueError, OverflowError):
                return
            provided = {"date": date.isoformat(), "calendar": self.calendar_name, "tz": tz}
            walls = []
            on: dict[dt.date, dict[str, str]] = {}  # the args of the walls on each date
            while time < end:
                day = time.date()
                args = on.get(day)
                if args is None:
                    args = on[day] = {**provided, "sched_date": day.isoformat()}
                walls.append(WallTime(day, time.time(), args))
                time += step
            yield walls

    def walls_per_date(self) -> int | None:
        if self.start.shifted or self.stop.shifted:
            return None  # a date's interval may reach into others'
        step = round(self.interval * 1_000_000)
        span = dt.datetime.combine(dt.date.min, self.stop.daytime) - dt.datetime.combine(
            dt.date.min, self.start.daytime)
        return -(-(span // dt.timedelta(microseconds=1)) // step)

    def to_jso(self) -> dict[str, Any]:
        return {
            **self.common_jso(),
            **self.dst_jso(),
            "start": self.start.to_jso(),
            "stop": self.stop.to_jso(),
            "interval": self.interval,
            "calendar": self.calendar_name,
        }

"""`daily`: fixed local daytimes on the dates of a calendar."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import JobError
from ..lib.strict import Fields, as_int, as_str, items_with_locs, parse_all
from ..lib.timefmt import format_time, parse_daytime, parse_duration
from .base import SCHEDULES, LocalSchedule, WallTime, local_dates
from .dst import localize, parse_tz

if TYPE_CHECKING:
    from ..calendar.base import Calendar


def parse_daytimes(f: Fields, key: str) -> list[dt.time]:
    """One daytime or a list, each error located at its item; sorted, without repeats."""
    value = f.require(key)
    items = items_with_locs(value, f.loc_of(key))
    if not items:
        raise JobError(f"{key} must be a daytime or a list of them", f.loc_of(key))
    daytimes = set()
    for item, loc in items:
        try:
            daytimes.add(parse_daytime(item))
        except ValueError as exc:
            raise JobError(f"{key}: {exc}", loc) from None
    return sorted(daytimes)


def parse_calendar(f: Fields, ctx: Any, default: str | None = "all") -> tuple[str | None, Any]:
    """The calendar's name as written and the calendar it names; null means the default."""
    name = f.get("calendar", None)
    name = default if name is None else f.convert("calendar", name, as_str)
    if name is None:
        return None, None
    return name, f.convert("calendar", name, ctx.calendar)


def daytime_jso(value: dt.time) -> str:
    """A daytime as job files write it, keeping fractions of a second (round trip)."""
    return value.isoformat()


@SCHEDULES.register("daily")
@dataclass(kw_only=True)
class DailySchedule(LocalSchedule):
    """Runs at each daytime on each calendar date.

    As in Apsis, the `date` arg is the calendar date D and the `time` arg is D at the
    daytime; the run happens on `calendar.shift(D, cal_shift) + date_shift` days at the
    daytime, plus `time_shift`.
    """

    KEYS = (*LocalSchedule.LOCAL_KEYS, "daytime", "calendar", "date_shift", "cal_shift", "time_shift")

    daytimes: list[dt.time]
    calendar_name: str = "all"
    calendar: Calendar = field(compare=False, repr=False)
    date_shift: int = 0
    cal_shift: int = 0
    time_shift_seconds: float = 0.0

    @classmethod
    def from_fields(cls, f: Fields, ctx: Any, common: dict[str, Any]) -> DailySchedule:
        parts = parse_all(f.diags, tz=lambda: f.require("tz", parse_tz),
                          daytimes=lambda: parse_daytimes(f, "daytime"),
                          calendar=lambda: parse_calendar(f, ctx))
        name, calendar = parts["calendar"]
        return cls(
            tz=parts["tz"],
            daytimes=parts["daytimes"],
            calendar_name=name or "all",
            calendar=calendar,
            date_shift=f.get("date_shift", 0, as_int),
            cal_shift=f.get("cal_shift", 0, as_int),
            time_shift_seconds=f.get("time_shift", 0.0, parse_duration),
            **cls.parse_dst(f),
            **common,
        )

    def time_shift(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.time_shift_seconds)

    def wall_times(self, first: dt.date) -> Iterator[list[WallTime]]:
        cal = self.calendar
        # The earliest run date needed is `first`, less whole days of time_shift; find
        # the first calendar date D whose run can be on or after it.
        first -= dt.timedelta(days=math.ceil(self.time_shift_seconds / 86400))
        date_shift = dt.timedelta(days=self.date_shift)
        try:
            nominal = first - date_shift
            if self.cal_shift > 0:
                nominal = cal.shift_date(nominal, -self.cal_shift)
        except (ValueError, OverflowError):  # a calendar with no dates: no runs
            return
        tz = self.tz.key
        shifted = bool(self.date_shift or self.cal_shift or self.time_shift_seconds)
        for date in local_dates(nominal):
            if not cal.contains_date(date):
                yield []
                continue
            try:
                run_date = cal.shift_date(date, self.cal_shift) + date_shift
            except (ValueError, OverflowError):
                return
            provided = {"date": date.isoformat(), "calendar": self.calendar_name, "tz": tz}
            if not shifted:
                yield [WallTime(run_date, daytime, provided) for daytime in self.daytimes]
                continue
            walls = []
            for daytime in self.daytimes:
                own = localize(date, daytime, self.tz, self.dst_gap, self.dst_fold)
                walls.append(WallTime(run_date, daytime, {**provided, "time": format_time(own.time)}))
            yield walls

    def walls_per_date(self) -> int:
        # Calendar shifts keep dates apart: no two dates' runs fall on one date.
        return len(self.daytimes)

    def to_jso(self) -> dict[str, Any]:
        return {
            **self.common_jso(),
            **self.dst_jso(),
            "daytime": [daytime_jso(d) for d in self.daytimes],
            "calendar": self.calendar_name,
            "date_shift": self.date_shift,
            "cal_shift": self.cal_shift,
            "time_shift": self.time_shift_seconds,
        }

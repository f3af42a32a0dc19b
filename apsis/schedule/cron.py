"""`cron`: a five-field cron expression read as local wall-clock times.

croniter only parses the fields here.  Matching walks local dates and yields each
matching (date, daytime) once, localized by the shared DST rule: croniter's own
iteration fires fall-back times twice.
"""

from __future__ import annotations

import functools

import calendar as _calendar
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from croniter import croniter  # type: ignore[import-untyped]
from croniter.croniter import CroniterError  # type: ignore[import-untyped]

from ..lib.strict import Fields, as_str, parse_all
from .base import SCHEDULES, LocalSchedule, WallTime, local_dates
from .daily import parse_calendar
from .dst import parse_tz

if TYPE_CHECKING:
    from ..calendar.base import Calendar

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_FIELDS = "minute hour day-of-month month day-of-week"
_EXAMPLE = "'*/15 9-17 * * Mon-Fri'"


@dataclass(frozen=True, slots=True)
class CronExpr:
    """The parsed fields; `None` means any.  Weekdays count from Sunday = 0."""

    daytimes: tuple[dt.time, ...]
    days: frozenset[int] | None
    last_day: bool
    months: frozenset[int] | None
    weekdays: frozenset[int] | None
    nth: dict[int, frozenset[int]]  # weekday → which of the month (`Mon#1`)
    day_or: bool

    def matches(self, date: dt.date) -> bool:
        """Whether the expression fires on `date` (local)."""
        if self.months is not None and date.month not in self.months:
            return False
        if self.day_or:
            return self._day_matches(date) or self._weekday_matches(date)
        return self._day_matches(date) and self._weekday_matches(date)

    def _day_matches(self, date: dt.date) -> bool:
        if self.days is None and not self.last_day:
            return True
        if self.days is not None and date.day in self.days:
            return True
        return self.last_day and date.day == _calendar.monthrange(date.year, date.month)[1]

    def _weekday_matches(self, date: dt.date) -> bool:
        if self.weekdays is None:
            return True
        weekday = date.isoweekday() % 7
        if weekday not in self.weekdays:
            return False
        nth = self.nth.get(weekday)
        return nth is None or (date.day - 1) // 7 + 1 in nth


def parse_cron(value: Any) -> CronExpr:
    """A five-field expression (names and `@daily`-style aliases allowed)."""
    return _parse_cron_text(as_str(value).strip())


@functools.lru_cache(maxsize=4096)
def _parse_cron_text(text: str) -> CronExpr:
    """Cached: many jobs share an expression, and a CronExpr is immutable."""
    fields = ALIASES.get(text.lower(), text).split()
    if len(fields) != 5:
        raise ValueError(
            f"a cron expression has five fields ({_FIELDS}), not {len(fields)}: {text!r}; "
            f"for example {_EXAMPLE}"
        )
    try:
        expanded, nth = croniter.expand(" ".join(fields))
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise ValueError(
            f"not a valid cron expression {text!r} ({exc}); the fields are {_FIELDS}, "
            f"for example {_EXAMPLE}"
        ) from None
    minutes, hours, days, months, weekdays = expanded
    plain = [*minutes, *hours, *months, *weekdays]
    if not all(isinstance(n, int) or n == "*" for n in plain) or not all(
        isinstance(n, int) or n in ("*", "l") for n in days
    ):
        raise ValueError(f"unsupported cron syntax in {text!r}")
    minutes = range(60) if minutes == ["*"] else sorted(minutes)
    hours = range(24) if hours == ["*"] else sorted(hours)
    # As Vixie cron: when both day fields are restricted (neither starts with `*`),
    # a date matching either one fires.
    day_or = not fields[2].startswith(("*", "?")) and not fields[4].startswith(("*", "?"))
    return CronExpr(
        daytimes=tuple(dt.time(h, m) for h in hours for m in minutes),
        days=None if days == ["*"] else frozenset(d for d in days if d != "l") or None,
        last_day="l" in days,
        months=None if months == ["*"] else frozenset(months),
        weekdays=None if weekdays == ["*"] else frozenset(weekdays),
        nth={int(k): frozenset(v) for k, v in nth.items()},
        day_or=day_or,
    )


@SCHEDULES.register("cron")
@dataclass(kw_only=True)
class CronSchedule(LocalSchedule):
    """Cron times in `tz`, optionally only on the dates of a calendar."""

    KEYS = (*LocalSchedule.LOCAL_KEYS, "expr", "calendar")

    expr: str
    calendar_name: str | None = None
    cron: CronExpr = field(compare=False, repr=False)
    calendar: Calendar | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_fields(cls, f: Fields, ctx: Any, common: dict[str, Any]) -> CronSchedule:
        expr = f.require("expr", as_str).strip()
        parts = parse_all(f.diags, cron=lambda: f.convert("expr", expr, parse_cron),
                          tz=lambda: f.require("tz", parse_tz),
                          calendar=lambda: parse_calendar(f, ctx, default=None))
        name, calendar = parts["calendar"]
        return cls(
            expr=expr, cron=parts["cron"], tz=parts["tz"], calendar_name=name, calendar=calendar,
            **cls.parse_dst(f), **common,
        )

    def wall_times(self, first: dt.date) -> Iterator[list[WallTime]]:
        cron, calendar = self.cron, self.calendar
        extra = {"tz": self.tz.key}
        if self.calendar_name is not None:
            extra["calendar"] = self.calendar_name
        for date in local_dates(first):
            if not cron.matches(date) or (calendar is not None and not calendar.contains_date(date)):
                yield []
                continue
            provided = {"date": date.isoformat(), **extra}
            yield [WallTime(date, daytime, provided) for daytime in cron.daytimes]

    def walls_per_date(self) -> int:
        return len(self.cron.daytimes)

    def to_jso(self) -> dict[str, Any]:
        return {
            **self.common_jso(),
            **self.dst_jso(),
            "expr": self.expr,
            "calendar": self.calendar_name,
        }

"""The one concrete calendar: a weekday set, minus holidays, plus extra dates.

`all`, weekday sets, `holidays:…`, `market:…` and named calendars are all this
class with different parts, so a named calendar can combine any of them.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, replace

from .base import Calendar
from .sources import HolidayList
from .weekdays import ALL_DAYS


@dataclass(frozen=True, eq=False, repr=False)
class BusinessCalendar(Calendar):
    """Dates on `weekdays` that are no holiday, plus `extra_dates` whatever they are."""

    name: str
    weekdays: frozenset[int] = ALL_DAYS
    sources: tuple[HolidayList, ...] = ()
    extra_holidays: frozenset[dt.date] = frozenset()
    extra_dates: frozenset[dt.date] = frozenset()
    # Indexed by date.weekday(): a tuple lookup is cheaper than a set lookup.
    _on_day: tuple[bool, ...] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_on_day", tuple(d in self.weekdays for d in range(7)))

    @property
    def has_holidays(self) -> bool:
        return bool(self.sources or self.extra_holidays)

    def is_holiday(self, date: dt.date) -> bool:
        """Whether `date` is a holiday of this calendar (whatever its weekday)."""
        if date in self.extra_holidays:
            return True
        return any(source.is_holiday(date) for source in self.sources)

    def contains_date(self, date: dt.date) -> bool:
        if self.extra_dates and date in self.extra_dates:
            return True
        if not self._on_day[date.weekday()]:
            return False
        if self.extra_holidays and date in self.extra_holidays:
            return False
        for source in self.sources:
            if source.is_holiday(date):
                return False
        return True

    def renamed(self, name: str) -> BusinessCalendar:
        """The same dates under another name (a named calendar that aliases another)."""
        return replace(self, name=name)

"""The calendar interface: which dates are "business days" for a schedule."""

from __future__ import annotations

import abc
import datetime as dt

from ..lib.timefmt import parse_date

DateLike = str | dt.date

# Shifting never scans further than this without finding a day: a calendar that
# admits no date at all must fail loudly, not loop.
MAX_SCAN_DAYS = 3660


class Calendar(abc.ABC):
    """A set of dates.  `str()` is its name, as templates print it.

    Template-facing methods take and return `YYYY-MM-DD` strings (a `datetime.date`
    is accepted too); `contains_date` is the fast path schedules use.
    """

    name: str

    @abc.abstractmethod
    def contains_date(self, date: dt.date) -> bool: ...

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<calendar {self.name}>"

    def contains(self, date: DateLike) -> bool:
        return self.contains_date(parse_date(date))

    def __contains__(self, date: DateLike) -> bool:
        return self.contains(date)

    def next_date(self, date: dt.date) -> dt.date:
        """The first date in the calendar on or after `date`."""
        for i in range(MAX_SCAN_DAYS):
            day = date + dt.timedelta(days=i)
            if self.contains_date(day):
                return day
        raise ValueError(f"calendar {self.name} has no date within {MAX_SCAN_DAYS} days of {date}")

    def prev_date(self, date: dt.date) -> dt.date:
        """The last date in the calendar on or before `date`."""
        for i in range(MAX_SCAN_DAYS):
            day = date - dt.timedelta(days=i)
            if self.contains_date(day):
                return day
        raise ValueError(f"calendar {self.name} has no date within {MAX_SCAN_DAYS} days of {date}")

    def shift_date(self, date: dt.date, n: int) -> dt.date:
        """Moves `n` calendar dates; a date not in the calendar first snaps in the direction of travel."""
        if n == 0:
            return self.next_date(date) if not self.contains_date(date) else date
        step = dt.timedelta(days=1 if n > 0 else -1)
        day = date
        for _ in range(abs(n)):
            day = day + step
            day = self.next_date(day) if n > 0 else self.prev_date(day)
        return day

    # Template-facing API: strings in, strings out.
    def shift(self, date: DateLike, n: int) -> str:
        return self.shift_date(parse_date(date), int(n)).isoformat()

    def next(self, date: DateLike) -> str:
        return self.next_date(parse_date(date)).isoformat()

    def prev(self, date: DateLike) -> str:
        return self.prev_date(parse_date(date)).isoformat()

    def after(self, date: DateLike) -> str:
        """Apsis-compatible: the first calendar date strictly after `date`."""
        return self.next_date(parse_date(date) + dt.timedelta(days=1)).isoformat()

    def before(self, date: DateLike) -> str:
        """Apsis-compatible: the last calendar date strictly before `date`."""
        return self.prev_date(parse_date(date) - dt.timedelta(days=1)).isoformat()

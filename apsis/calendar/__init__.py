"""Calendars: weekday sets, holidays, markets, and named calendars.

A calendar name is one of
- `all`: every date;
- a weekday set: `Mon-Fri`, `Mon,Wed,Fri`, `Sat-Sun`, `Fri-Mon` (any case, full names ok);
- `holidays:<COUNTRY>[:<SUBDIVISION>]`: Mon-Fri minus that country's public holidays;
- `market:<MIC or name>[:<SUBDIVISION>]`: Mon-Fri minus that market's holidays;
- a name defined under `calendars:` in the jobs directory's `.apsis-jobs.yaml`.
"""

from .base import Calendar
from .business import BusinessCalendar
from .lookup import CalendarResolver, get_calendar, is_builtin_name
from .named import parse_calendar_defs
from .sources import HolidayList, market_codes

__all__ = [
    "BusinessCalendar",
    "Calendar",
    "CalendarResolver",
    "HolidayList",
    "get_calendar",
    "is_builtin_name",
    "market_codes",
    "parse_calendar_defs",
]

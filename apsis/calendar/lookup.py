"""Calendars by name: the built-ins, cached, and the jobs directory's named ones."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from ..lib.strict import did_you_mean
from .base import Calendar
from .business import BusinessCalendar
from .sources import holiday_list
from .weekdays import ALL_DAYS, MON_FRI, looks_like_weekdays, parse_weekdays

SOURCE_KINDS = ("holidays", "market")
NAME_FORMS = ("all, none, a weekday set like Mon-Fri, holidays:<COUNTRY>[:<SUBDIVISION>], "
              "market:<MIC>, or a name under 'calendars:' in .apsis-jobs.yaml")

# Calendar names found in Apsis job files (the calendars its `ora` library ships) and
# the built-in with the same dates.  docs/jobs.md ("Calendar aliases") lists them; a
# named calendar in .apsis-jobs.yaml may take one of these names to mean something else.
APSIS_ALIASES = {
    "usa-federal-businessdays": "holidays:US",
}


@functools.lru_cache(maxsize=1024)
def _builtin(name: str) -> BusinessCalendar:
    """A built-in calendar by name, built once per process per spelling; an alias keeps
    the name it was written with (what `{{ calendar }}` prints)."""
    text = name.strip()
    if text.lower() == "all":
        return BusinessCalendar(name, ALL_DAYS)
    if text.lower() == "none":
        return BusinessCalendar(name, frozenset())
    if text in APSIS_ALIASES:
        return _builtin(APSIS_ALIASES[text]).renamed(name)
    if ":" in text:
        kind = text.partition(":")[0].strip().lower()
        if kind not in SOURCE_KINDS:
            hint = did_you_mean(kind, SOURCE_KINDS)
            raise ValueError(f"unknown calendar {name!r}: {kind!r} is not a calendar kind{hint}; "
                             f"a calendar is {NAME_FORMS}")
        return BusinessCalendar(name, MON_FRI, (holiday_list(text),))
    return BusinessCalendar(name, parse_weekdays(text))


def is_builtin_name(name: str) -> bool:
    """Whether `name` is shaped like a built-in calendar (so a named one may not take it)."""
    text = name.strip()
    if text.lower() in ("all", "none") or ":" in text:
        return True
    try:
        parse_weekdays(text)
    except ValueError:
        return False
    return True


def get_calendar(name: str, named: Mapping[str, Calendar] | None = None) -> Calendar:
    """The calendar called `name`: a named one from `named`, else a built-in.

    Raises `ValueError` with a message that says what is wrong and what would be right.
    """
    if named and name in named:
        return named[name]
    text = name.strip()
    if text.lower() in ("all", "none") or ":" in text or text in APSIS_ALIASES:
        return _builtin(name)
    try:
        return _builtin(name)
    except ValueError as exc:
        weekday_error = exc
    names = list(named or ())
    hint = did_you_mean(text, names)
    if hint or not looks_like_weekdays(text):
        if not hint and names:
            hint = f"; named calendars: {', '.join(sorted(names))}"
        raise ValueError(f"unknown calendar {name!r}{hint} (a calendar is {NAME_FORMS})") from None
    raise ValueError(f"bad weekday set {name!r}: {weekday_error} "
                     f"(write e.g. Mon-Fri, Mon,Wed,Fri or Sat-Sun)") from None


class CalendarResolver:
    """`get_calendar` bound to a jobs directory's named calendars (for `ParseContext`)."""

    __slots__ = ("named",)

    def __init__(self, named: Mapping[str, Calendar] | None = None) -> None:
        self.named: Mapping[str, Calendar] = named or {}

    def __call__(self, name: str) -> Calendar:
        return get_calendar(name, self.named)

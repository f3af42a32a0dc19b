"""Wall-clock (date, daytime) → instant, with the job file's DST rule.

A local time can be missing (the spring-forward gap) or ambiguous (the fall-back
fold).  Every daily, daily-interval and cron schedule localizes through `localize`
so that they all apply the same rule (SPEC §1.2):

- gap `end` (default): the first instant after the jump (02:30 → 03:00 local);
  `shift`: the wall time plus the gap (02:30 → 03:30, Python's `fold=0`);
  `skip`: no run; the instant of `end` is kept with a reason, so the skipped run
  is still recorded in order.
- fold `first` (default): the first occurrence; `second`: the second.

The rule is offset-agnostic: Australia/Lord_Howe's 30-minute shift and zones
that change their standard offset are handled the same way.
"""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from ..lib.strict import did_you_mean
from ..lib.timefmt import UTC

DST_GAPS = ("end", "shift", "skip")
DST_FOLDS = ("first", "second")

_ONE_MICRO = dt.timedelta(microseconds=1)
# Wall times remembered by `localize`: every minute of a week in one zone, or a few
# days of the distinct daytimes of thousands of jobs (~2 MB when full).
LOCALIZED_CACHE = 16_384


@dataclass(frozen=True, slots=True)
class Localized:
    """Where a wall-clock time lands: an aware UTC instant, and why it must not run (if so)."""

    time: dt.datetime
    skip_reason: str | None = None


@functools.lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    # Scanning tzdata takes a few milliseconds: only done for an error message.
    return frozenset(available_timezones())


def parse_tz(value: object) -> ZoneInfo:
    """A time zone by IANA name; an unknown name is an error with a hint."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"a time zone must be an IANA name like 'America/New_York', not {value!r}")
    name = value.strip()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        pass
    names = _zone_names()
    by_lower = {n.lower(): n for n in names}
    if name.lower() in by_lower:
        hint = f" (did you mean {by_lower[name.lower()]!r}?)"
    else:
        hint = did_you_mean(name, set(names))
    raise ValueError(f"unknown time zone {name!r}{hint}")


@functools.lru_cache(maxsize=LOCALIZED_CACHE)
def localize(
    date: dt.date, daytime: dt.time, tz: ZoneInfo, gap: str = "end", fold: str = "first"
) -> Localized:
    """The instant of `daytime` on `date` in `tz`, applying the DST rule.

    Cached: a day of 10 000 jobs asks for the same few dates, zones and daytimes over
    and over (a restart localized 600 000 wall times, most of its time)."""
    naive = dt.datetime.combine(date, daytime)
    local = naive.replace(tzinfo=tz)
    before = local.utcoffset()  # fold=0: the offset in force before a transition
    after = local.replace(fold=1).utcoffset()
    assert before is not None and after is not None
    if before == after:
        return Localized((naive - before).replace(tzinfo=UTC))
    if before > after:
        # Clocks went back: the wall time happens twice.
        offset = before if fold == "first" else after
        return Localized((naive - offset).replace(tzinfo=UTC))
    # Clocks jumped forward over this wall time: it does not exist.
    if gap == "shift":
        return Localized((naive - before).replace(tzinfo=UTC))
    end = _transition(naive, tz, before, after)
    if gap == "skip":
        start_wall = (end + before).replace(tzinfo=None)
        end_wall = (end + after).replace(tzinfo=None)
        reason = (
            f"{daytime.isoformat()} on {date.isoformat()} does not exist in {tz.key}: clocks "
            f"jump from {_wall(start_wall)} to {_wall(end_wall)} (dst_gap: skip)"
        )
        return Localized(end, reason)
    return Localized(end)


def _transition(naive: dt.datetime, tz: ZoneInfo, before: dt.timedelta, after: dt.timedelta) -> dt.datetime:
    """The instant clocks jumped over `naive`: the first with the `after` offset.

    It lies in (naive - after, naive - before]; bisect to the microsecond.
    """
    lo = (naive - after).replace(tzinfo=UTC)  # still on the old offset
    hi = (naive - before).replace(tzinfo=UTC)  # already on the new offset
    while hi - lo > _ONE_MICRO:
        mid = lo + (hi - lo) // 2
        if mid.astimezone(tz).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return hi


def _wall(value: dt.datetime) -> str:
    return value.strftime("%H:%M" if value.second == 0 and value.microsecond == 0 else "%H:%M:%S")

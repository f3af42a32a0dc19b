"""The schedule interface: when a job's runs are due, and with which args."""

from __future__ import annotations

import abc
import datetime as dt
import heapq
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo

from ..lib.registry import Registry
from ..lib.strict import Fields, as_args, as_bool, as_str, did_you_mean
from ..lib.timefmt import UTC, format_daytime, format_time, parse_duration
from .dst import DST_FOLDS, DST_GAPS, localize


@dataclass(frozen=True, slots=True)
class ScheduledRun:
    """One run a schedule asks for.

    `time` is aware UTC.  `args` holds the schedule's explicit args and everything
    it provides (`date`, `time`, `daytime`, ...); the job binds only its params.
    `skip_reason` is set when the run is due but must not run (a `dst_gap: skip`
    time): it is recorded as a skipped run so nothing is missed silently.
    `stop_time` is set by the start/stop form.
    """

    time: dt.datetime
    args: dict[str, str]
    skip_reason: str | None = None
    stop_time: dt.datetime | None = None


CATCHUP_MODES = ("all", "latest", "none")
COMMON_KEYS = ("type", "enabled", "args", "jitter", "catchup")


@dataclass(kw_only=True)
class Schedule(abc.ABC):
    """Common keys of every schedule type."""

    TYPE = "?"
    # The keys a type reads besides COMMON_KEYS: known even when parsing stops early,
    # so that a misspelt key is still reported with its hint.
    KEYS: ClassVar[tuple[str, ...]] = ()

    enabled: bool = True
    args: dict[str, str] = field(default_factory=dict)
    jitter: float = 0.0
    catchup: str = "all"

    @abc.abstractmethod
    def times(self, start: dt.datetime) -> Iterator[ScheduledRun]:
        """Runs due at or after `start` (aware), in time order, forever or until exhausted.

        Times strictly increase, except that distinct (date, daytime) wall times that
        the DST rule puts on one instant (two gap times under `dst_gap: end`) are all
        yielded, in (date, daytime) order: a window [a, b) takes all of them or none.
        """

    @abc.abstractmethod
    def to_jso(self) -> dict[str, Any]:
        """The schedule as JSON, with `type` and every key (for the API and the store)."""

    def most_runs(self, span: dt.timedelta) -> int | None:
        """At most how many runs any window [t, t + span) holds, or None if unknown.

        Lets the scheduler know that a schedule cannot reach `max_ahead` runs before its
        horizon without walking a day of runs to count them (Scheduler._bounded_stop)."""
        return None

    @classmethod
    def from_fields(cls, f: Fields, ctx: Any, common: dict[str, Any]) -> Schedule:
        """The schedule from its mapping; `common` holds the parsed common keys."""
        raise NotImplementedError(f"{cls.__name__}.from_fields")

    def common_jso(self) -> dict[str, Any]:
        return {
            "type": self.TYPE,
            "enabled": self.enabled,
            "args": dict(self.args),
            "jitter": self.jitter,
            "catchup": self.catchup,
        }


SCHEDULES: Registry[Schedule] = Registry("schedule")


def one_of(key: str, choices: tuple[str, ...]) -> Callable[[Any], str]:
    """A converter that admits only `choices`, with a hint for a near miss."""

    def conv(value: Any) -> str:
        text = as_str(value)
        if text not in choices:
            raise ValueError(
                f"must be one of {', '.join(choices)}, not {text!r}{did_you_mean(text, choices)}"
            )
        return text

    conv.__name__ = f"one_of_{key}"
    return conv


def parse_common(f: Fields) -> dict[str, Any]:
    """The keys every schedule type has (besides `type`)."""
    return {
        "enabled": f.get("enabled", True, as_bool),
        "args": f.get("args", {}, as_args),
        "jitter": f.get("jitter", 0.0, parse_duration),
        "catchup": f.get("catchup", "all", one_of("catchup", CATCHUP_MODES)),
    }


def as_utc(time: dt.datetime) -> dt.datetime:
    """An aware UTC time; a naive one is taken as UTC, as everywhere in Apsis."""
    return time.astimezone(UTC) if time.tzinfo else time.replace(tzinfo=UTC)


class WallTime(NamedTuple):
    """A wall-clock time a local schedule wants, with the args it provides besides
    `daytime` (this one's) and `time` (the instant the run is due, unless given).
    Walls may share one dict of args: it is never changed."""

    date: dt.date
    daytime: dt.time
    args: dict[str, str]


# No wall time on a local date can land earlier than that date's midnight read as
# UTC minus this (UTC offsets, LMT included, stay under 16 hours).
_MAX_OFFSET = dt.timedelta(hours=18)
_ONE_DAY = dt.timedelta(days=1)
# A schedule that admits no date for this long is exhausted (a calendar or cron
# expression that matches nothing must end its generator, not spin).  Covers Feb 29.
MAX_EMPTY_DAYS = 3660
LAST_DATE = dt.date(9999, 12, 1)


@dataclass(kw_only=True)
class LocalSchedule(Schedule):
    """A schedule of wall-clock times in a time zone, under the DST rule.

    Subclasses list their wall times date by date (`wall_times`); this class
    localizes them and yields each (date, daytime) exactly once.  Order: by instant;
    wall times that land on the same instant (two gap times under `dst_gap: end`)
    are all kept, in (date, daytime) order, so times are non-decreasing and strictly
    increasing wherever instants differ.
    """

    LOCAL_KEYS: ClassVar[tuple[str, ...]] = ("tz", "dst_gap", "dst_fold")

    tz: ZoneInfo
    dst_gap: str = "end"
    dst_fold: str = "first"

    @staticmethod
    def parse_dst(f: Fields) -> dict[str, Any]:
        return {
            "dst_gap": f.get("dst_gap", "end", one_of("dst_gap", DST_GAPS)),
            "dst_fold": f.get("dst_fold", "first", one_of("dst_fold", DST_FOLDS)),
        }

    def dst_jso(self) -> dict[str, Any]:
        return {"tz": self.tz.key, "dst_gap": self.dst_gap, "dst_fold": self.dst_fold}

    @abc.abstractmethod
    def wall_times(self, first: dt.date) -> Iterator[list[WallTime]]:
        """Wall times date by date from `first` on, one list a date (maybe empty).

        The dates of successive non-empty lists must increase, and a list's times
        must all be on or after its date's midnight: `times()` relies on it to
        release runs in order while staying lazy.
        """

    def time_shift(self) -> dt.timedelta:
        """Added to every localized instant (`daily`'s `time_shift`)."""
        return dt.timedelta(0)

    def walls_per_date(self) -> int | None:
        """At most how many wall times fall on one local date, or None if unknown."""
        return None

    def most_runs(self, span: dt.timedelta) -> int | None:
        # A wall time on local date D lands within _MAX_OFFSET of D's own hours read as
        # UTC (the shift moves every run alike), so a window meets fewer than
        # (span + 2 * _MAX_OFFSET) / 1 day + 1 dates, each bounded by walls_per_date.
        per_date = self.walls_per_date()
        if per_date is None:
            return None
        return per_date * math.ceil((span + 2 * _MAX_OFFSET) / _ONE_DAY + 1)

    def times(self, start: dt.datetime) -> Iterator[ScheduledRun]:
        start = as_utc(start)
        # A wall time on an earlier date lands before its next midnight read as UTC plus
        # _MAX_OFFSET, so before `start` (a subclass goes back for its own shifts).
        first = (start - _MAX_OFFSET).date()
        shift = self.time_shift()
        # A wall time whose own hours, read as UTC, come before this cannot land at or
        # after `start`: it is dropped without localizing it (most of the first days).
        early = (start - _MAX_OFFSET - shift).replace(tzinfo=None)
        combine = dt.datetime.combine
        # A run's args are made as it is yielded: a walk stops at the first run past its
        # window, and the runs of the dates read ahead of it are never asked for.
        heap: list[tuple[dt.datetime, int, WallTime, str | None]] = []
        seq = 0
        empty = 0
        for walls in self.wall_times(first):
            if not walls:
                empty += 1
                if empty > MAX_EMPTY_DAYS:
                    break
                continue
            empty = 0
            # Nothing from this date on can land before `bound`: release what does.
            bound = dt.datetime.combine(walls[0].date, dt.time(), UTC) - _MAX_OFFSET + shift
            while heap and heap[0][0] < bound:
                yield self._run(*heapq.heappop(heap))
            for wall in walls:
                if combine(wall.date, wall.daytime) < early:
                    continue
                loc = localize(wall.date, wall.daytime, self.tz, self.dst_gap, self.dst_fold)
                time = loc.time + shift
                if time < start:
                    continue
                heapq.heappush(heap, (time, seq, wall, loc.skip_reason))
                seq += 1
        while heap:
            yield self._run(*heapq.heappop(heap))

    def _run(self, time: dt.datetime, seq: int, wall: WallTime, skip_reason: str | None) -> ScheduledRun:
        # A shifted schedule provides its own `time` (its date's, as in Apsis).
        args = {"time": format_time(time), **wall.args, "daytime": format_daytime(wall.daytime),
                **self.args}
        return ScheduledRun(time, args, skip_reason)


def local_dates(first: dt.date) -> Iterator[dt.date]:
    """Every date from `first` on, stopping short of the end of `datetime`'s range."""
    day = first
    while day < LAST_DATE:
        yield day
        day += dt.timedelta(days=1)

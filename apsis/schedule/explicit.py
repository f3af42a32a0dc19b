"""`explicit`: a fixed list of instants."""

from __future__ import annotations

import bisect
import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import JobError
from ..lib.strict import Fields, items_with_locs
from ..lib.timefmt import format_time, parse_time
from .base import SCHEDULES, Schedule, ScheduledRun, as_utc

# An offset or `Z` at the end: a bare local time would silently mean UTC.
_TIME_WITH_OFFSET = re.compile(r"\d[Tt ]\d{2}:\d{2}.*(?:[zZ]|[+-]\d{2}(?::?\d{2})?)$")


def parse_explicit_time(value: Any) -> dt.datetime:
    """An ISO 8601 time with an offset or `Z` (not `now` or `+1h`: they move on every reload)."""
    if isinstance(value, str) and _TIME_WITH_OFFSET.search(value.strip()):
        return parse_time(value)
    raise ValueError(
        f"not a time with an offset: {value!r} (write ISO 8601 like 2026-01-02T09:30:00Z "
        "or 2026-01-02T09:30:00-05:00)"
    )


@SCHEDULES.register("explicit")
@dataclass(kw_only=True)
class ExplicitSchedule(Schedule):
    """Runs at the listed times only; repeats collapse into one run."""

    KEYS = ("times",)

    instants: list[dt.datetime]

    @classmethod
    def from_fields(cls, f: Fields, ctx: Any, common: dict[str, Any]) -> ExplicitSchedule:
        value = f.require("times")
        times = set()
        for item, loc in items_with_locs(value, f.loc_of("times")):
            try:
                times.add(parse_explicit_time(item))
            except ValueError as exc:
                raise JobError(f"times: {exc}", loc) from None
        return cls(instants=sorted(times), **common)

    def times(self, start: dt.datetime) -> Iterator[ScheduledRun]:
        for time in self.instants[bisect.bisect_left(self.instants, as_utc(start)):]:
            yield ScheduledRun(time, {"time": format_time(time), **self.args})

    def most_runs(self, span: dt.timedelta) -> int:
        return len(self.instants)

    def to_jso(self) -> dict[str, Any]:
        return {**self.common_jso(), "times": [format_time(t) for t in self.instants]}

"""`interval`: every so often, aligned to the Unix epoch in UTC."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import JobError
from ..lib.strict import Fields
from ..lib.timefmt import UTC, format_daytime, format_time, parse_duration
from .base import SCHEDULES, Schedule, ScheduledRun, as_utc

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)
_MICROS = 1_000_000


def _micros(seconds: float) -> int:
    # Whole microseconds: float steps would drift off the grid over years.
    return round(seconds * _MICROS)


@SCHEDULES.register("interval")
@dataclass(kw_only=True)
class IntervalSchedule(Schedule):
    """Times `epoch + phase + k * interval`, so restarts and replicas agree on the grid."""

    KEYS = ("interval", "phase")

    interval: float
    phase: float = 0.0

    @classmethod
    def from_fields(cls, f: Fields, ctx: Any, common: dict[str, Any]) -> IntervalSchedule:
        interval = f.require("interval", parse_duration)
        if _micros(interval) <= 0:
            raise JobError("interval must be positive", f.loc_of("interval"))
        phase = f.get("phase", 0.0, parse_duration)
        if _micros(phase) >= _micros(interval):
            raise JobError(
                f"phase must be less than the interval ({interval:g}s)", f.loc_of("phase")
            )
        return cls(interval=interval, phase=phase, **common)

    def times(self, start: dt.datetime) -> Iterator[ScheduledRun]:
        step = _micros(self.interval)
        phase = _micros(self.phase)
        since = as_utc(start) - _EPOCH
        offset = (since.days * 86400 + since.seconds) * _MICROS + since.microseconds - phase
        k = -(-offset // step)  # ceiling: the first grid point at or after start
        time = _EPOCH + dt.timedelta(microseconds=phase + k * step)
        delta = dt.timedelta(microseconds=step)
        while True:
            args = {
                "time": format_time(time),
                "date": time.date().isoformat(),
                "daytime": format_daytime(time.time()),
                **self.args,
            }
            yield ScheduledRun(time, args)
            try:
                time += delta
            except OverflowError:
                return

    def most_runs(self, span: dt.timedelta) -> int:
        return -(-(span // dt.timedelta(microseconds=1)) // _micros(self.interval))

    def to_jso(self) -> dict[str, Any]:
        return {**self.common_jso(), "interval": self.interval, "phase": self.phase}

"""The start/stop form: `{start: <schedule>, stop: <when to stop the run>}`."""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

from ..errors import JobError
from ..lib.registry import Registry
from ..lib.strict import Fields
from ..lib.timefmt import parse_daytime, parse_duration
from .base import Schedule, ScheduledRun
from .daily import daytime_jso
from .dst import localize, parse_tz


class Stop(abc.ABC):
    """When a run started at a schedule time is stopped."""

    TYPE = "?"
    KEYS: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def stop_time(self, time: dt.datetime) -> dt.datetime:
        """The stop time of a run scheduled at `time` (aware UTC)."""

    @abc.abstractmethod
    def to_jso(self) -> dict[str, Any]: ...


STOPS: Registry[Stop] = Registry("stop")


@STOPS.register("duration")
@dataclass(frozen=True)
class DurationStop(Stop):
    """Stops the run this long after its schedule time."""

    KEYS = ("duration",)
    duration: float

    @classmethod
    def from_fields(cls, f: Fields, start: Schedule) -> DurationStop:
        return cls(f.require("duration", parse_duration))

    def stop_time(self, time: dt.datetime) -> dt.datetime:
        return time + dt.timedelta(seconds=self.duration)

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "duration": self.duration}


@STOPS.register("daytime")
@dataclass(frozen=True)
class DaytimeStop(Stop):
    """Stops the run at the next occurrence of a local daytime after its schedule time.

    `tz` defaults to the start schedule's; the DST rule's defaults apply to it.
    """

    KEYS = ("daytime", "tz")
    daytime: dt.time
    tz: ZoneInfo

    @classmethod
    def from_fields(cls, f: Fields, start: Schedule) -> DaytimeStop:
        daytime = f.require("daytime", parse_daytime)
        default_tz = getattr(start, "tz", None)
        if f.has("tz") or default_tz is None:
            tz = f.require("tz", parse_tz)
        else:
            tz = default_tz
        return cls(daytime, tz)

    def stop_time(self, time: dt.datetime) -> dt.datetime:
        date = time.astimezone(self.tz).date()
        for days in range(3):  # today's may be past; a gap can never eat two days
            stop = localize(date + dt.timedelta(days=days), self.daytime, self.tz).time
            if stop > time:
                return stop
        raise AssertionError("unreachable: a daytime occurs every day")  # pragma: no cover

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "daytime": daytime_jso(self.daytime), "tz": self.tz.key}


@dataclass(kw_only=True)
class StartStopSchedule(Schedule):
    """A schedule whose runs carry a stop time.

    `enabled`, `args`, `jitter` and `catchup` are the start schedule's, so the
    engine reads this one like any other.
    """

    TYPE = "start-stop"
    KEYS = ("start", "stop")

    start: Schedule
    stop: Stop

    def __post_init__(self) -> None:
        self.enabled = self.start.enabled
        self.args = self.start.args
        self.jitter = self.start.jitter
        self.catchup = self.start.catchup

    def times(self, start: dt.datetime) -> Iterator[ScheduledRun]:
        for run in self.start.times(start):
            yield dataclasses.replace(run, stop_time=self.stop.stop_time(run.time))

    def most_runs(self, span: dt.timedelta) -> int | None:
        return self.start.most_runs(span)

    def to_jso(self) -> dict[str, Any]:
        return {"start": self.start.to_jso(), "stop": self.stop.to_jso()}


def parse_start_stop(
    node: Any, ctx: Any, loc: Any, parse_schedule: Callable[[Any, Any, Any], Schedule]
) -> StartStopSchedule:
    """The start/stop mapping; `parse_schedule` parses the start schedule."""
    f = Fields(node, "schedule", ctx.diags, loc)
    try:
        start = parse_schedule(f.require("start"), f.loc_of("start"), ctx)
        sf = Fields(f.require("stop"), "stop", ctx.diags, f.loc_of("stop"))
        try:
            stop_cls = STOPS.get(sf.require("type"))
        except ValueError as exc:
            raise JobError(str(exc), sf.loc_of("type")) from None
        try:
            stop = stop_cls.from_fields(sf, start)  # type: ignore[attr-defined]
        finally:
            sf.ignore("type", *getattr(stop_cls, "KEYS", ()))
            sf.done()
    finally:
        f.ignore("start", "stop")
        f.done()
    return StartStopSchedule(start=start, stop=stop)

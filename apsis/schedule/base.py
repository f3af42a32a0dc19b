"""The schedule interface: when a job's runs are due, and with which args."""

from __future__ import annotations

import abc
import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Iterator

from ..lib.registry import Registry


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
    schedule_index: int = 0


CATCHUP_MODES = ("all", "latest", "none")


@dataclass(kw_only=True)
class Schedule(abc.ABC):
    """Common keys of every schedule type."""

    TYPE = "?"

    enabled: bool = True
    args: dict[str, str] = field(default_factory=dict)
    jitter: float = 0.0
    catchup: str = "all"

    @abc.abstractmethod
    def times(self, start: dt.datetime) -> Iterator[ScheduledRun]:
        """Runs due at or after `start` (aware), in strictly increasing time order, forever or until exhausted."""

    @abc.abstractmethod
    def to_jso(self) -> dict[str, Any]:
        """The schedule as JSON, with `type` and every key (for the API and the store)."""


SCHEDULES: Registry[Schedule] = Registry("schedule")

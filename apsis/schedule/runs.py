"""The runs of a job in a window [start, stop): the one place schedules are expanded.

The scheduler, `GET /jobs/{id}/schedule` (and so `apsis job --next` and `apsis
backfill`) and `apsisctl check-job --list-runs` all read runs from here, so they
agree on which schedules count (enabled ones), where a window ends, what args a
run gets (only the job's params) and when a schedule is exhausted.
"""

from __future__ import annotations

import datetime as dt
import heapq
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..lib.timefmt import format_time
from ..model.job import bind_args

if TYPE_CHECKING:
    from ..model.job import Job


@dataclass(frozen=True, slots=True)
class PlannedRun:
    """One run a schedule of a job asks for, with its args bound to the job's params.

    `skip_reason` is set when the run is due but must not run (a `dst_gap: skip`
    time): the scheduler records it as skipped, listings of runs to create leave it out.
    """

    job: Job
    schedule_index: int
    time: dt.datetime
    args: dict[str, str]
    stop_time: dt.datetime | None = None
    skip_reason: str | None = None

    @property
    def schedule_key(self) -> str:
        """Names the schedule stably across restarts: `job_id#index`."""
        return schedule_key(self.job.job_id, self.schedule_index)

    def to_jso(self) -> dict[str, Any]:
        """As the API lists expected runs: `stop` and `skip_reason` only when set."""
        jso: dict[str, Any] = {"job_id": self.job.job_id, "args": self.args,
                               "time": format_time(self.time),
                               "schedule_index": self.schedule_index}
        if self.stop_time is not None:
            jso["stop"] = format_time(self.stop_time)
        if self.skip_reason:
            jso["skip_reason"] = self.skip_reason
        return jso


class TooManyRuns(Exception):
    """A schedule asks for more runs in one window than the cap: the rest are cut off."""

    def __init__(self, key: str, cap: int, stop: dt.datetime) -> None:
        super().__init__(f"schedule {key} yields over {cap} runs before {format_time(stop)}; "
                         f"cut off")
        self.key, self.cap, self.stop = key, cap, stop


def schedule_key(job_id: str, index: int) -> str:
    """`job_id#index`: which schedule of which job made a run."""
    return f"{job_id}#{index}"


def schedule_runs(job: Job, index: int, start: dt.datetime, stop: dt.datetime, *,
                  cap: int | None = None, following: bool = False) -> Iterator[PlannedRun]:
    """The runs of `job.schedules[index]` in [start, stop), in time order, lazily.

    The schedule's `enabled` is not consulted (see `job_runs`).  With `cap`, at most
    that many runs are yielded; if the window holds more, `TooManyRuns` is raised
    after the last one, so the caller keeps what it got and reports the rest.  With
    `following`, the first run at or after `stop` comes last (where the schedule goes
    on: the same pass, not another from `stop`).
    A schedule that runs into the end of the calendar (year 9999) just ends.
    """
    schedule = job.schedules[index]
    count = 0
    try:
        for sr in schedule.times(start):
            if sr.time >= stop:
                if following:
                    yield PlannedRun(job, index, sr.time, bind_args(job.params, sr.args),
                                     sr.stop_time, sr.skip_reason)
                return
            if cap is not None and count >= cap:
                raise TooManyRuns(schedule_key(job.job_id, index), cap, stop)
            count += 1
            yield PlannedRun(job, index, sr.time, bind_args(job.params, sr.args),
                             sr.stop_time, sr.skip_reason)
    except OverflowError:
        return


def job_runs(job: Job, start: dt.datetime, stop: dt.datetime) -> Iterator[PlannedRun]:
    """The runs of the job's enabled schedules in [start, stop), lazily.

    In time order; runs at the same time come in schedule order.
    """
    streams = [schedule_runs(job, i, start, stop)
               for i, schedule in enumerate(job.schedules) if schedule.enabled]
    return heapq.merge(*streams, key=lambda run: (run.time, run.schedule_index))

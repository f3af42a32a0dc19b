"""Plans the runs that schedules ask for, up to a horizon, exactly once across restarts.

The scheduling clock (stored) is the time up to which schedules have been
expanded.  The scheduler only plans: it hands the engine a `Window` of runs, and
the engine creates them and stores the window's end as the clock in one
transaction, so a crash can neither lose nor double a scheduled run.  On start,
runs whose time passed while the daemon was down are caught up by each schedule's
`catchup` mode (apsis/schedule/catchup.py); the others are recorded as skipped,
with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..lib.timefmt import format_time, parse_time
from ..model.job import Job
from ..model.run import Run
from ..model.states import State
from ..schedule.catchup import catch_up
from ..schedule.runs import PlannedRun, TooManyRuns, schedule_runs

log = logging.getLogger("apsis.scheduler")

# How often the horizon moves forward; runs are created well before they are due.
TICK_SECONDS = 60.0
# A schedule that yields more runs than this in one window is cut off and reported.
MAX_RUNS_PER_WINDOW = 100_000


@dataclass(slots=True)
class Planned:
    """A run to create: what its schedule asks for, and why it is skipped, if it is."""

    run: PlannedRun
    catchup: str
    jitter: float
    skip_reason: str | None = None


@dataclass(slots=True)
class Window:
    """The runs of [start, stop); `stop` becomes the clock when they are created."""

    start: dt.datetime
    stop: dt.datetime
    runs: list[Planned] = field(default_factory=list)
    advances_clock: bool = True

    @property
    def clock(self) -> str | None:
        return format_time(self.stop) if self.advances_clock else None


class Scheduler:
    def __init__(self, jobs: Callable[[], Mapping[str, Job]], *, horizon: float,
                 max_age: float | None) -> None:
        self._jobs = jobs
        self.horizon = horizon
        self.max_age = max_age
        self.clock: dt.datetime | None = None
        # Schedules (by key) that had runs missed in the catch-up window.
        self._missed_keys: set[str] = set()

    def begin(self, since: str, stored: str | None, now: dt.datetime) -> None:
        """Where catching up starts: the stored clock, now, or a given time."""
        if since == "clock":
            self.clock = parse_time(stored) if stored else now
        elif since == "now":
            self.clock = now
        else:
            self.clock = parse_time(since)
        if stored and since != "clock":
            log.info("catch-up starts at %s (the stored clock was %s)", format_time(self.clock), stored)

    def next_window(self, now: dt.datetime, *, catching_up: bool = False) -> Window | None:
        """The runs from the clock to the horizon; None if the clock is there already."""
        assert self.clock is not None, "begin() first"
        horizon = now + dt.timedelta(seconds=self.horizon)
        if horizon <= self.clock:
            return None
        return self._window(self.clock, horizon, now, catching_up, jobs=None)

    def advanced(self, window: Window) -> None:
        """The window's runs are committed: the clock moves to its end."""
        if window.advances_clock:
            self.clock = window.stop

    def replan(self, job_ids: set[str], now: dt.datetime,
               unfinished: Iterable[Run]) -> tuple[list[tuple[Run, str]], Window | None]:
        """After a reload: the future scheduled runs of changed jobs to skip (with the
        reason), and their runs from the new definitions, from now to the clock."""
        jobs = self._jobs()
        stale = []
        for run in unfinished:
            # A run whose time has come (due, or held back by jitter) keeps its
            # definition: the new schedule is only expanded from now on.
            if (run.job_id in job_ids and run.expected and run.state == State.SCHEDULED
                    and run.schedule_time >= now):
                reason = ("its job was removed" if run.job_id not in jobs
                          else "its job changed; rescheduled from the new definition")
                stale.append((run, reason))
        assert self.clock is not None
        window = None
        if self.clock > now:
            window = self._window(now, self.clock, now, False, jobs=job_ids)
            window.advances_clock = False
        return stale, window

    def catch_up_restored(self, runs: Sequence[Run], now: dt.datetime) -> list[tuple[Run, str | None]]:
        """Runs a previous daemon created whose time passed while it was down: for each,
        None to start it now or the reason it is skipped.  Call after the first window
        (it knows which schedules missed later runs)."""
        oldest = self._oldest(now)
        groups: dict[str, list[Run]] = defaultdict(list)
        for run in runs:
            groups[run.meta.schedule or run.run_id].append(run)
        decided: list[tuple[Run, str | None]] = []
        for key, group in groups.items():
            group.sort(key=lambda r: r.schedule_time)
            reasons = catch_up([r.schedule_time for r in group], group[0].meta.catchup or "all",
                               oldest, later_missed=key in self._missed_keys)
            decided.extend(zip(group, reasons))
        return decided

    def _oldest(self, now: dt.datetime) -> dt.datetime | None:
        return now - dt.timedelta(seconds=self.max_age) if self.max_age else None

    def _window(self, start: dt.datetime, stop: dt.datetime, now: dt.datetime,
                catching_up: bool, jobs: set[str] | None) -> Window:
        window = Window(start, stop)
        oldest = self._oldest(now)
        for job in list(self._jobs().values()):
            if jobs is not None and job.job_id not in jobs:
                continue
            for index, schedule in enumerate(job.schedules):
                if not schedule.enabled:
                    continue
                missed: list[PlannedRun] = []
                try:
                    for planned in schedule_runs(job, index, start, stop, cap=MAX_RUNS_PER_WINDOW):
                        if planned.skip_reason:
                            window.runs.append(Planned(planned, schedule.catchup, schedule.jitter,
                                                       planned.skip_reason))
                        elif catching_up and planned.time < now:
                            missed.append(planned)
                        else:
                            window.runs.append(Planned(planned, schedule.catchup, schedule.jitter))
                except TooManyRuns as exc:
                    log.error("job %s: %s", job.job_id, exc)
                if missed:
                    self._missed_keys.add(missed[0].schedule_key)
                    reasons = catch_up([p.time for p in missed], schedule.catchup, oldest)
                    window.runs.extend(Planned(p, schedule.catchup, schedule.jitter, reason)
                                       for p, reason in zip(missed, reasons))
        return window

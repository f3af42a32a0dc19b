"""Plans the runs that schedules ask for, up to a horizon and a count, exactly once
across restarts.

The future is bounded twice: by time (`schedule.horizon`, one day) and by count (at
most `schedule.max_ahead` runs of one schedule from now), so a 2-second interval
holds 100 runs, not 43 200.  What has been expanded is kept as clocks: the
scheduling clock (stored) is the time up to which every schedule has been expanded,
except the schedules the count holds back, each with its own earlier clock (stored
beside it, `clock:job#index`).  A schedule's runs so far are exactly those before its
clock, whatever restarts and reloads came between.

The scheduler only plans: it hands the engine a `Window` of runs, and the engine
creates them and stores the window's clocks in one transaction, so a crash can
neither lose nor double a scheduled run.  On start, runs whose time passed while the
daemon was down are caught up by each schedule's `catchup` mode
(apsis/schedule/catchup.py); the others are recorded as skipped, with the reason.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice

from ..lib.timefmt import format_time, parse_time
from ..model.job import Job
from ..model.run import Run
from ..model.states import State
from ..schedule.catchup import catch_up
from ..schedule.runs import PlannedRun, TooManyRuns, schedule_key, schedule_runs

log = logging.getLogger("apsis.scheduler")

# How often the horizon moves forward; runs are created well before they are due.
TICK_SECONDS = 60.0
# The shortest tick, for schedules whose `max_ahead` runs last only seconds.
MIN_TICK_SECONDS = 0.5
# Runs of one schedule created ahead of now, at most (`schedule.max_ahead`).
MAX_AHEAD = 100
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
    """The runs up to `stop`; `stop` becomes the clock when they are created, and each
    schedule of `schedule_clocks` gets its own clock (None: it has caught up with the
    clock, or is gone)."""

    stop: dt.datetime
    runs: list[Planned] = field(default_factory=list)
    # Only the schedule clocks that change (a write each), of the schedules `seen`.
    schedule_clocks: dict[str, dt.datetime | None] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    # Per schedule expanded up to `stop`: its job and its first run at or after `stop`.
    next_due: dict[str, tuple[Job, dt.datetime | None]] = field(default_factory=dict)
    advances_clock: bool = True

    @property
    def clock(self) -> str | None:
        return format_time(self.stop) if self.advances_clock else None

    def stored_schedule_clocks(self) -> dict[str, str | None]:
        return {key: None if when is None else format_time(when)
                for key, when in self.schedule_clocks.items()}

    def split(self, size: int) -> list[Window]:
        """The window as parts of about `size` runs, committed one after the other, so
        that creating a day of 100 000 runs never holds them all half-written at once
        (the peak that the daemon's memory kept).  A part takes whole schedules, and
        gives each the clock it ends at, ahead of the scheduling clock; the last part
        moves the scheduling clock and drops those.  A crash between parts leaves each
        schedule's runs exactly those before its clock, as a window does."""
        if len(self.runs) <= size:
            return [self]
        # The schedules due soonest first: a start that serves before its window is all
        # created (Engine._first_window) has the next hours' runs first.
        first: dict[str, dt.datetime] = {}
        for planned in self.runs:
            key, when = planned.run.schedule_key, planned.run.time
            first[key] = min(first.get(key, when), when)
        parts: list[Window] = []
        part = Window(self.stop, advances_clock=False)
        soonest = sorted(self.runs, key=lambda p: (first[p.run.schedule_key], p.run.schedule_key))
        for planned in soonest:
            key = planned.run.schedule_key
            if key not in part.schedule_clocks:
                if len(part.runs) >= size:
                    parts.append(part)
                    part = Window(self.stop, advances_clock=False)
                part.schedule_clocks[key] = self.schedule_clocks.get(key) or self.stop
            part.runs.append(planned)
        last = Window(self.stop, part.runs, seen=self.seen, next_due=self.next_due,
                      advances_clock=self.advances_clock)
        last.schedule_clocks = {**{key: None for p in parts for key in p.schedule_clocks},
                                **self.schedule_clocks}
        return [*parts, last]


class Scheduler:
    def __init__(self, jobs: Callable[[], Mapping[str, Job]], *, horizon: float,
                 max_age: float | None, max_ahead: int = MAX_AHEAD) -> None:
        self._jobs = jobs
        self.horizon = horizon
        self.max_age = max_age
        self.max_ahead = max_ahead
        self.clock: dt.datetime | None = None
        # Schedules (by key) expanded up to another time than the clock: earlier (held
        # back by `max_ahead`), or later (a window stopped between its parts).
        self.behind: dict[str, dt.datetime] = {}
        self._stored_keys: set[str] = set()  # the schedule clocks in the database
        # Schedules (by key) that had runs missed in the catch-up window.
        self._missed_keys: set[str] = set()
        # When the daemon came up, until the first window is all created: runs before it
        # were missed while it was down, and are caught up by their schedule's `catchup`,
        # even in a later window if a part of the first one failed.
        self._up_since: dt.datetime | None = None
        # Per schedule not held back: the job it was expanded for, and its first run at or
        # after the clock (None: no more runs). A window that ends before that time has
        # nothing to ask of it, so a tick over 10 000 quiet jobs costs little.
        self._next_due: dict[str, tuple[Job, dt.datetime | None]] = {}

    def begin(self, since: str, stored: str | None, now: dt.datetime,
              schedule_clocks: Mapping[str, str] | None = None) -> None:
        """Where catching up starts: the stored clocks, now, or a given time.

        `now` or a time only skips what the stored clocks have not reached: the runs a
        previous daemon created ahead exist already, and planning them again would
        double each one."""
        self._up_since = now
        self._stored_keys = set(schedule_clocks or {})
        clocks = {k: parse_time(v) for k, v in (schedule_clocks or {}).items()}
        start = now if since in ("clock", "now") else parse_time(since)
        if stored and since == "clock":
            self.clock = parse_time(stored)
            self.behind = clocks
            return
        self.clock = max(parse_time(stored), start) if stored else start
        # Schedules held back before `start` skip to it; those that a window stopped
        # between its parts expanded ahead of the clock (Window.split) go on from
        # theirs; the rest go on from the clock.
        self.behind = {k: max(when, start) for k, when in clocks.items()
                       if max(when, start) != self.clock}
        if not stored:
            return
        log.info("catch-up starts at %s (the stored clock was %s)", format_time(self.clock), stored)

    def next_window(self, now: dt.datetime) -> Window | None:
        """The runs from each schedule's clock to the horizon, at most `max_ahead` of one
        schedule from now; None if there are none and no clock moves.  Until the first
        window (after `begin`) is all created, its runs before the daemon came up are
        missed ones, caught up by their schedule's `catchup`."""
        assert self.clock is not None, "begin() first"
        clock = self.clock
        stop = max(clock, now + dt.timedelta(seconds=self.horizon))
        window = self._window(lambda key: self.behind.get(key, clock), stop, now,
                              self._up_since, jobs=None)
        for key in (self._stored_keys | set(self.behind)) - window.seen:
            window.schedule_clocks[key] = None  # a schedule gone, or disabled
        if not window.runs and stop == clock and not window.schedule_clocks:
            return None
        return window

    def advanced(self, window: Window) -> None:
        """The window's runs are committed: the clocks move to its end."""
        if window.advances_clock:
            self.clock = window.stop
            self._up_since = None  # caught up
        self._next_due.update(window.next_due)
        for key, when in window.schedule_clocks.items():
            if when is None:
                self.behind.pop(key, None)
                self._stored_keys.discard(key)
            else:
                self.behind[key] = when
                self._stored_keys.add(key)

    def next_tick(self, now: dt.datetime) -> float:
        """Seconds until the next window is worth asking for: a schedule held back by
        `max_ahead` is topped up when half of what it has ahead has gone by."""
        tick = TICK_SECONDS
        for when in self.behind.values():
            tick = min(tick, (when - now).total_seconds() / 2)
        return max(tick, MIN_TICK_SECONDS)

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
            window = self._window(lambda key: now, self.clock, now, None, jobs=job_ids)
            window.advances_clock = False
            for key in self._stored_keys | set(self.behind):
                if key.rpartition("#")[0] in job_ids and key not in window.schedule_clocks:
                    window.schedule_clocks[key] = None
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

    def _bounded_stop(self, job: Job, index: int, now: dt.datetime, stop: dt.datetime) -> dt.datetime:
        """Where the schedule's expansion ends: `stop`, or earlier at its run `max_ahead`
        places after now (that run is left for a later window).  A schedule that cannot
        hold that many runs before `stop` (Schedule.most_runs) is not walked: ten runs a
        day of 10 000 jobs were a day of 100 000 runs computed to be counted, at every
        restart."""
        most = job.schedules[index].most_runs(stop - now)
        if most is not None and most <= self.max_ahead:
            return stop
        beyond = next(islice(schedule_runs(job, index, now, stop), self.max_ahead, None), None)
        return stop if beyond is None else beyond.time

    def _expand(self, job: Job, index: int, start: dt.datetime, now: dt.datetime,
                stop: dt.datetime) -> tuple[dt.datetime, list[PlannedRun], dt.datetime | None]:
        """Where the schedule's expansion from `start` ends (`_bounded_stop`, never before
        `start`), its runs up to there, and a time before which it has no more runs
        (None: it has no more at all): its next run, if the same pass came to it.  The
        runs ahead of now are counted as they come: from a start not after now (a first
        start, a catch-up) that is what bounds them, in one pass over the schedule.  A
        cut-off schedule (TooManyRuns) keeps the runs it got."""
        runs: list[PlannedRun] = []
        end = stop if start <= now else max(start, self._bounded_stop(job, index, now, stop))
        after: dt.datetime | None = end
        ahead = 0
        try:
            for planned in schedule_runs(job, index, start, end, cap=MAX_RUNS_PER_WINDOW,
                                         following=True):
                if planned.time >= end:
                    after = planned.time
                    break
                if planned.time >= now:
                    ahead += 1
                    if ahead > self.max_ahead:
                        end = after = planned.time
                        break
                runs.append(planned)
            else:
                after = None  # the schedule is exhausted
        except TooManyRuns as exc:
            log.error("job %s: %s", job.job_id, exc)
            if start <= now:
                end = max(start, self._bounded_stop(job, index, now, stop))
        while runs and runs[-1].time >= end:
            runs.pop()
        return end, runs, after

    def _window(self, start_of: Callable[[str], dt.datetime], stop: dt.datetime,
                now: dt.datetime, missed_before: dt.datetime | None,
                jobs: set[str] | None) -> Window:
        window = Window(stop)
        oldest = self._oldest(now)
        for job in list(self._jobs().values()):
            if jobs is not None and job.job_id not in jobs:
                continue
            for index, schedule in enumerate(job.schedules):
                if not schedule.enabled:
                    continue
                key = schedule_key(job.job_id, index)
                window.seen.add(key)
                due = self._next_due.get(key)
                if (missed_before is None and key not in self.behind and due is not None
                        and due[0] is job and (due[1] is None or due[1] >= stop)):
                    continue  # nothing of it before `stop`
                start = start_of(key)
                end, runs, after = self._expand(job, index, start, now, stop)
                clock = end if end != stop else None  # (ahead of `stop`: see split)
                if clock != self.behind.get(key):
                    window.schedule_clocks[key] = clock
                if clock is None:
                    window.next_due[key] = (job, after)
                missed: list[PlannedRun] = []
                for planned in runs:
                    if planned.skip_reason:
                        window.runs.append(Planned(planned, schedule.catchup, schedule.jitter,
                                                   planned.skip_reason))
                    elif missed_before is not None and planned.time < missed_before:
                        missed.append(planned)
                    else:
                        window.runs.append(Planned(planned, schedule.catchup, schedule.jitter))
                if missed:
                    self._missed_keys.add(missed[0].schedule_key)
                    reasons = catch_up([p.time for p in missed], schedule.catchup, oldest)
                    window.runs.extend(Planned(p, schedule.catchup, schedule.jitter, reason)
                                       for p, reason in zip(missed, reasons))
        return window

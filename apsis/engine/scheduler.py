"""Turns schedules into runs, up to a horizon, exactly once across restarts.

The scheduling clock (stored) is the time up to which schedules have been
expanded; advancing it and creating the runs happen in one transaction, so a
crash can neither lose nor double a scheduled run.  On start, the runs whose
time passed while the daemon was down are caught up by each schedule's
`catchup` mode; the ones not started are recorded as skipped, with the reason.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..lib.timefmt import format_time, parse_time
from ..model.job import bind_args
from ..model.states import State

if TYPE_CHECKING:
    from .core import Engine

log = logging.getLogger("apsis.scheduler")

# How often the horizon moves forward; runs are created well before they are due.
TICK_SECONDS = 60.0
# A schedule that yields more runs than this in one window is cut off and reported.
MAX_RUNS_PER_WINDOW = 100_000


class Scheduler:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.clock: dt.datetime | None = None
        self._task: asyncio.Task | None = None
        self._lock = asyncio.Lock()
        # Schedules (by `schedule_key`) that had runs missed in the catch-up window.
        self._missed_keys: set[str] = set()

    async def start(self, since: str, restored_missed: Sequence[Any] = ()) -> None:
        """Catches up from the clock, then starts advancing the horizon.

        `restored_missed` are runs a previous daemon created ahead of time whose time
        passed while it was down: they follow their schedule's `catchup` too.
        """
        from .core import utcnow

        now = utcnow()
        stored = await self.engine.store.get_clock()
        if since == "clock":
            self.clock = parse_time(stored) if stored else now
        elif since == "now":
            self.clock = now
        else:
            self.clock = parse_time(since)
        if stored and since != "clock":
            log.info("catch-up starts at %s (the stored clock was %s)", format_time(self.clock), stored)
        await self.advance(catching_up=True)
        await self._catch_up_restored(restored_missed, now)
        self._task = self.engine.spawn(self._loop(), "scheduler")

    async def _catch_up_restored(self, runs: Sequence[Any], now: dt.datetime) -> None:
        engine = self.engine
        max_age = engine.config.max_age
        oldest = now - dt.timedelta(seconds=max_age) if max_age else None
        groups: dict[str, list[Any]] = defaultdict(list)
        for run in runs:
            groups[run.meta.get("schedule", run.run_id)].append(run)
        for key, group in groups.items():
            group.sort(key=lambda r: r.schedule_time)
            mode = group[0].meta.get("catchup", "all")
            for i, run in enumerate(group):
                last = i == len(group) - 1 and key not in self._missed_keys
                if oldest is not None and run.schedule_time < oldest:
                    reason = "missed while the daemon was down; older than schedule.max_age"
                elif mode == "none" or (mode == "latest" and not last):
                    reason = f"missed while the daemon was down (catchup: {mode})"
                else:
                    engine.arm_due(run)
                    continue
                await engine.transition(run, State.SKIPPED, reason)

    def stop(self) -> None:
        if self._task:
            self._task.cancel()

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                await self.advance()
            except Exception:
                log.exception("scheduling failed; retrying at the next tick")

    async def advance(self, *, catching_up: bool = False) -> None:
        from .core import utcnow

        async with self._lock:
            now = utcnow()
            horizon = now + dt.timedelta(seconds=self.engine.config.horizon)
            assert self.clock is not None
            if horizon <= self.clock:
                return
            await self._expand(self.clock, horizon, now, catching_up, jobs=None)
            self.clock = horizon

    async def _expand(self, start: dt.datetime, stop: dt.datetime, now: dt.datetime,
                      catching_up: bool, jobs: set[str] | None) -> None:
        """Creates the runs due in [start, stop) and stores `stop` as the clock, atomically."""
        engine = self.engine
        max_age = engine.config.max_age
        oldest = now - dt.timedelta(seconds=max_age) if max_age else None
        planned: list[tuple[Any, Any, Any, str | None]] = []  # (job, schedule, sr, skip reason)
        for job in list(engine.jobs_dir.jobs.values()):
            if jobs is not None and job.job_id not in jobs:
                continue
            for schedule in job.schedules:
                if not schedule.enabled:
                    continue
                missed: list[Any] = []
                count = 0
                for sr in schedule.times(start):
                    if sr.time >= stop:
                        break
                    count += 1
                    if count > MAX_RUNS_PER_WINDOW:
                        log.error("job %s: a schedule yields over %d runs before %s; cut off",
                                  job.job_id, MAX_RUNS_PER_WINDOW, format_time(stop))
                        break
                    if sr.skip_reason:
                        planned.append((job, schedule, sr, sr.skip_reason))
                    elif catching_up and sr.time < now:
                        missed.append(sr)
                    else:
                        planned.append((job, schedule, sr, None))
                if missed:
                    self._missed_keys.add(schedule_key(job, schedule))
                planned.extend(self._catch_up(job, schedule, missed, oldest))
        await self._create(planned, clock=format_time(stop))

    def _catch_up(self, job: Any, schedule: Any, missed: list[Any], oldest: dt.datetime | None):
        """Missed runs: started once each (`all`), only the last (`latest`), or none; never silent."""
        mode = schedule.catchup
        for i, sr in enumerate(missed):
            if oldest is not None and sr.time < oldest:
                yield job, schedule, sr, "missed while the daemon was down; older than schedule.max_age"
            elif mode == "none" or (mode == "latest" and i < len(missed) - 1):
                yield job, schedule, sr, f"missed while the daemon was down (catchup: {mode})"
            else:
                yield job, schedule, sr, None

    async def _create(self, planned: list[tuple], clock: str) -> None:
        engine = self.engine
        ids = await engine.store.allocate_run_ids(len(planned)) if planned else []
        by_reason: dict[tuple, list] = defaultdict(list)
        for run_id, (job, schedule, sr, reason) in zip(ids, planned):
            args = bind_args(job.params, sr.args)
            run = engine.bind_run(job, args, run_id, sr.time, stop=sr.stop_time, expected=True)
            # Which schedule made it, and how it catches up if the daemon is down at its time.
            run.meta["schedule"] = schedule_key(job, schedule)
            run.meta["catchup"] = schedule.catchup
            if any(p not in args for p in job.params):
                run.meta["bind_error"] = (f"schedule of job {job.job_id!r} does not bind param(s) "
                                          f"{', '.join(p for p in job.params if p not in args)}")
            by_reason[(reason, schedule.jitter)].append(run)
        if not by_reason:
            await engine.writer.write(clock=clock)
            return
        groups = list(by_reason.items())
        for i, ((reason, jitter), runs) in enumerate(groups):
            # The clock goes with the last group: until it is stored, a restart redoes the window.
            await engine.schedule_new(runs, skip_reason=reason, jitter=jitter,
                                      clock=clock if i == len(groups) - 1 else None)

    async def reschedule(self, job_ids: set[str]) -> None:
        """After a reload: future scheduled runs of changed jobs are replaced by fresh ones."""
        from .core import utcnow

        engine = self.engine
        async with self._lock:
            now = utcnow()
            for run in list(engine.runs.values()):
                # A run whose time has come (due, or held back by jitter) keeps its
                # definition: the new schedule is only expanded from now on.
                if (run.job_id in job_ids and run.expected and run.state == State.SCHEDULED
                        and run.schedule_time >= now):
                    engine.cancel_timer(run)
                    reason = ("its job was removed" if run.job_id not in engine.jobs_dir.jobs
                              else "its job changed; rescheduled from the new definition")
                    await engine.transition(run, State.SKIPPED, reason)
            assert self.clock is not None
            if self.clock > now:
                await self._expand(now, self.clock, now, False, jobs=job_ids)


def schedule_key(job: Any, schedule: Any) -> str:
    """Names one schedule of one job, stably across restarts: `job_id#index`."""
    return f"{job.job_id}#{job.schedules.index(schedule)}"

"""The engine: the one place where runs change state.

Every state change goes through `transition` (or `_record_new` for runs being
created): it is checked against the table of transitions, written with its log
entry and events in one transaction (the group-commit writer), and only after the
commit does the run in memory change, the event go out, and the waiter and the
actions react.  A change the database refuses leaves no trace but an error for
its own caller.  Only unfinished runs live in memory; history is the store's.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..action import ActionContext
from ..cond import BoundCondition, RunsView
from ..errors import Diagnostics, JobError
from ..jobs_dir import JobsDir, load_jobs_dir, parse_job, reload_files
from ..lib.timefmt import UTC, format_duration, format_time
from ..model.job import Job, missing_params
from ..model.run import Run, RunMeta, shared_times, summary_of
from ..model.states import FINISHED, State, TransitionError, can_transition
from ..store import default_archive_path
from .actions import Actions
from .binding import NewRun, RenderCache, bind_run, conditions_of, share_with_job
from .errors import Invalid, NotFound, NotRecorded, Unavailable
from .events import EventBus
from .ports import Step
from .runbook import RunBook
from .runner import Runner
from .scheduler import Scheduler, Window
from .timers import DueQueue, WallTimer
from .waiter import Waiter
from .writer import Writer

log = logging.getLogger("apsis.engine")


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


@dataclass(slots=True)
class _Change:
    """One run's transition: applied to a copy to be written, to the run once committed."""

    frm: State
    to: State
    ts: str
    message: str | None
    log_message: str
    updates: dict[str, Any] = field(default_factory=dict)
    at: str | None = None  # when it really happened, if earlier than `ts` (the times entry)
    times: dict[str, str] | None = None  # the run's times with this change, made once

    def apply(self, run: Run) -> None:
        run.state = self.to
        run.times = self._times(run)
        run.message = self.message
        for key, value in self.updates.items():
            setattr(run, key, value)

    def _times(self, run: Run) -> dict[str, str]:
        """The run's times with this change: those `record` writes are those `apply` sets."""
        if self.times is None:
            self.times = {**run.times, self.to.value: self.at or self.ts}
            if self.frm == State.NEW:
                self.times["new"] = self.ts
        return self.times

    def record(self, run: Run) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        """(run JSON, log entry, events) as they will be once committed; the run itself
        is left as it is until then.  Made on every transition of a burst (4 000 for 1 000
        runs), before its commit: the run's own dicts and lists go in (`shared`), as they
        are encoded before they could change, and the summary is the row's values."""
        to = self.to.value
        jso = run.to_jso(with_job=self.frm == State.NEW, shared=True)
        jso["state"] = to
        jso["times"] = self._times(run)
        jso["message"] = self.message
        for key, value in self.updates.items():
            jso[key] = value.to_jso() if hasattr(value, "to_jso") else value
        entry = {"run_id": run.run_id, "ts": self.ts, "state": to, "message": self.log_message}
        events = [
            {"type": "run_transition", "ts": self.ts, "run": summary_of(jso),
             "from": self.frm.value, "to": to},
            {"type": "run_log", "ts": self.ts, "run_id": run.run_id, "job_id": run.job_id,
             "entry": entry},
        ]
        return jso, entry, events


NEVER_STARTED = ("the daemon stopped before this run's program was started (its agent has no "
                 "record of it): starting it now")
# Runs of a window created in one transaction, at most (but a schedule's runs together):
# what they hold while being written is freed between parts, not all at once at the end.
# Memory kept after a first start with a day of 100 000 runs: 258 MB in parts of 5 000,
# 229 MB in parts of 1 000, 224 MB in parts of 250 (more commits, slower).
WINDOW_PART = 1_000
# The parts of a first start's window created before the daemon serves, for this long at
# most; the others are made while it serves (reads answered, writes taken).
FIRST_WINDOW_SECONDS = 1.0
# A transition learned of later than this after it happened says so in the run's log.
LATE_NEWS_SECONDS = 1.0


def _happened_at(change: _Change, run: Run, at: dt.datetime, now: dt.datetime) -> None:
    """Dates the change at `at`, kept between the run's previous transition and now (a
    remote host's clock may be off), and notes in the log when the daemon learned it."""
    previous = run.time_of(change.frm)
    if previous is not None:
        at = max(at, previous)
    at = min(at, now)
    change.at = format_time(at)
    late = (now - at).total_seconds()
    if late >= LATE_NEWS_SECONDS:
        after = f"{late:.0f}s" if late < 120 else format_duration(late)
        change.log_message += f" (at {change.at}; the daemon learned of it {after} later)"


def _skips_by_part(stale: Sequence[tuple[Run, str]],
                   parts: Sequence[Window]) -> list[list[tuple[Run, str]]]:
    """A reload's stale runs, each with the part that creates its schedule's new runs
    (the others with the first): a schedule is then all old or all new, whichever
    part a stopped daemon got to."""
    part_of = {p.run.schedule_key: i for i, part in enumerate(parts) for p in part.runs}
    skips: list[list[tuple[Run, str]]] = [[] for _ in parts]
    for run, reason in stale:
        skips[part_of.get(run.meta.schedule or "", 0)].append((run, reason))
    return skips


def _share_with(run: Run, other: Run | None) -> bool:
    """Whether `run` took the values of `other` (a run of its job restored before it,
    its values shared): all but its id, times and state are equal."""
    if (other is None or run.meta != other.meta or run.args != other.args
            or run.program != other.program or run.conditions != other.conditions
            or run.actions != other.actions or run.labels != other.labels):
        return False
    run.job_id, run.meta, run.args = other.job_id, other.meta, other.args
    run.program, run.conditions, run.actions = other.program, other.conditions, other.actions
    run.labels = other.labels
    return True


class Engine:
    def __init__(self, config: Any, store: Any, jobs_dir: JobsDir) -> None:
        self.config = config
        self.store = store
        self.jobs_dir = jobs_dir
        self.bus = EventBus()
        self.writer = Writer(store, self.bus)
        self.runs = RunBook()  # unfinished runs only
        self._timers: dict[str, WallTimer] = {}
        self.due = DueQueue(self._on_due_id)
        self._tasks: set[asyncio.Task] = set()
        self.view: RunsView = _View(self)
        self.context: ActionContext = _ActionContext(self)
        self.scheduler = Scheduler(lambda: self.jobs_dir.jobs, horizon=config.horizon,
                                   max_age=config.max_age, max_ahead=config.max_ahead)
        self._scheduling = asyncio.Lock()
        self._replanned = asyncio.Event()  # a reload changed what the scheduler holds
        self.waiter = Waiter(self, max_time=config.waiting_max_time)
        self.runner = Runner(self)
        self.actions = Actions(self, config.actions)
        self.started_at = utcnow()
        self.stopping = False
        self.url = ""  # the API's base URL, given to programs as APSIS_URL
        self.restart_requested = False
        self.shutdown_requested = asyncio.Event()
        self.leading = False  # deciding and writing (`lead`); a standby only serves
        # `lead` has restored the unfinished runs: until then a write could make a run
        # that the restore reads back as a second copy of it (two `running`s).
        self.restored = False
        # The first window's parts created while serving (`_create_rest`), once led.
        self.planning: asyncio.Task | None = None
        self.leadership: Any = None  # the election among daemons sharing a database, if any
        self._archiving = asyncio.Lock()  # the loop and `apsisctl db archive` take turns

    def lose_leadership(self, why: str) -> None:
        """Stops scheduling and starting at once, and restarts as a standby: another
        daemon may lead now, and nothing this one holds in memory can be trusted."""
        log.error("no longer the leader (%s): stopping, to start again as a standby", why)
        self.leading = False
        self.stopping = True
        self.request_shutdown(restart=True)

    def request_shutdown(self, restart: bool = False) -> None:
        """Asks the daemon to stop (and, with `restart`, to start again in the same process)."""
        self.restart_requested = restart
        self.shutdown_requested.set()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, since: str | None = None, *,
                    unfinished: Awaitable[Sequence[dict[str, Any]]] | None = None) -> None:
        """Serves and leads at once: a daemon alone on its database (`unfinished`: its
        unfinished runs, being read already)."""
        await self.serve()
        await self.lead(since, unfinished=unfinished)

    async def serve(self) -> None:
        """What a standby does too: reads and events come from the store; nothing is
        decided, scheduled or started until `lead`."""
        self.bus.last_seq = await self.store.last_seq()

    async def lead(self, since: str | None = None, *,
                   unfinished: Awaitable[Sequence[dict[str, Any]]] | None = None) -> None:
        """Starts deciding: restores the unfinished runs (read here unless given),
        catches up and schedules."""
        self.leading = True
        self.writer.start()
        self.spawn(self.due.run(), "due-queue")
        self.bus.last_seq = await self.store.last_seq()
        await self.runner.start()
        missed, not_started = await self.restore(unfinished)
        now = utcnow()
        self.scheduler.begin(since or self.config.since, await self.store.get_clock(), now,
                             await self.store.get_schedule_clocks())
        await self._scheduling.acquire()  # until the first window is all created
        try:
            rest = await self._first_window()
            await self._catch_up_restored(missed, not_started, now)
        except BaseException:
            self._scheduling.release()
            raise
        self.restored = True
        self.planning = self.spawn(self._create_rest(rest), "first-window")
        self.spawn(self._schedule_loop(), "scheduler")
        self.spawn(self._trim_events_loop(), "trim-events")
        if self.config.archive is not None:
            self.spawn(self._archive_loop(), "archive")
        await self.emit([{"type": "daemon", "status": "started"}])

    async def stop(self) -> None:
        """Stops deciding; running programs keep running under the agent and are reattached later."""
        self.stopping = True
        for timer in self._timers.values():
            timer.cancel()
        try:
            if self.leading:
                await self.emit([{"type": "daemon", "status": "stopping"}])
        except Exception:
            log.exception("could not record the daemon's stop")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.runner.stop()
        await self.writer.close()
        self.bus.close_all()

    def spawn(self, coro: Awaitable, name: str = "task") -> asyncio.Task:
        """A background task that is tracked, logged on failure and cancelled at stop."""
        task = asyncio.ensure_future(coro)
        task.set_name(f"apsis-{name}")
        self._tasks.add(task)

        def done(t: asyncio.Task) -> None:
            self._tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    async def restore(self, unfinished: Awaitable[Sequence[dict[str, Any]]] | None = None
                      ) -> tuple[list[Run], list[Run]]:
        """Picks up the unfinished runs a previous daemon left (SPEC §1.10).

        Returns the scheduled runs whose time passed while the daemon was down, and
        the runs left `starting` whose program its agent says it never started: the
        scheduler decides, by their schedule's `catchup`, which of them still start.
        A `starting` run the agent did start is reattached, with its real outcome.
        """
        now = utcnow()
        missed: list[Run] = []
        jsos = await (self.store.load_unfinished_runs() if unfinished is None else unfinished)
        jobs = self.jobs_dir.jobs
        times: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
        # Per job, its last run restored: the next one, mostly equal in all but id and
        # times, takes its values by a comparison, not by share_with_job's lookups.
        last: dict[str, Run] = {}
        for jso in jsos:
            run = Run.from_jso(jso)
            run.times = shared_times(run.times, times)
            if run.job_id in jobs and not _share_with(run, last.get(run.job_id)):
                share_with_job(run, jobs[run.job_id])
                last[run.job_id] = run
            self.runs.remember(run)
        del last
        log.info("restoring %d unfinished runs", len(jsos))
        errors: list[tuple[Run, str]] = []
        starting: list[Run] = []
        due_at: dict[tuple[str, float], dt.datetime] = {}  # a day's runs share a few times
        for run in self.runs:
            if run.state == State.NEW:
                errors.append((run, "the daemon stopped before this run was scheduled"))
            elif run.state == State.SCHEDULED:
                key = (run.times["schedule"], run.meta.jitter)
                when = due_at.get(key)
                if when is None:
                    when = due_at[key] = self.due_time(run)
                if run.expected and run.meta.catchup is not None and when < now:
                    missed.append(run)
                else:
                    self.arm_due(run, when)
                    self.runs.lighten(run)  # until due (RunBook)
            elif run.state == State.WAITING:
                try:
                    self.waiter.add(run, self.conditions_of(run))
                except ValueError as exc:
                    errors.append((run, str(exc)))
            elif run.state == State.STARTING:
                starting.append(run)
            elif run.state in (State.RUNNING, State.STOPPING):
                await self.runner.reattach(run)
        # Asked of the agents at once: a host that cannot be reached costs its timeout once.
        found = await asyncio.gather(*(self.runner.recover_start(run) for run in starting))
        not_started = [run for run, started in zip(starting, found) if started is False]
        errors.extend((run, "the daemon stopped while this run was starting: the program "
                            "may or may not have started, so it is not started again "
                            "(rerun it if it is safe)")
                      for run, started in zip(starting, found) if started is None)
        await asyncio.gather(*(self.transition(run, State.ERROR, message)
                               for run, message in errors))
        return missed, not_started

    # -- scheduling ---------------------------------------------------------------------

    async def _advance(self) -> None:
        async with self._scheduling:
            window = self.scheduler.next_window(utcnow())
            if window is not None:
                await self.create_planned(window)

    async def _first_window(self) -> list[Window]:
        """Creates the first window's parts, the soonest due first (Window.split), for
        FIRST_WINDOW_SECONDS at most; returns the parts left, which `_create_rest` makes
        while the daemon serves (the scheduling lock held all along): a first start with
        10 000 jobs answered nothing for the ~30 s its day of 100 000 runs took."""
        window = self.scheduler.next_window(utcnow())
        parts = [] if window is None else window.split(WINDOW_PART)
        deadline = asyncio.get_running_loop().time() + FIRST_WINDOW_SECONDS
        while parts and asyncio.get_running_loop().time() < deadline:
            await self._create_part(parts[0])
            self.scheduler.advanced(parts.pop(0))
        return parts

    async def _create_rest(self, parts: list[Window]) -> None:
        """The first window's parts left by `_first_window`, then the scheduling lock
        that `lead` took is let go.  If one fails, the scheduler goes on from the parts
        made at its next tick, as after a failed window, still catching up: the runs
        missed while the daemon was down keep their schedule's `catchup`."""
        try:
            if parts:
                log.info("creating the first window's other %d runs while serving",
                         sum(len(part.runs) for part in parts))
            while parts:  # each part let go once made
                part = parts.pop(0)
                await self._create_part(part)
                self.scheduler.advanced(part)
        finally:
            self._scheduling.release()

    async def _schedule_loop(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._replanned.wait(), self.scheduler.next_tick(utcnow()))
            except TimeoutError:
                pass
            else:
                # Woken by a reload: its replan made the changed jobs' runs already; only
                # the next tick may have moved (a new schedule may hold seconds of runs).
                # A pass over every schedule here would cost seconds with 10 000 jobs.
                self._replanned.clear()
                continue
            try:
                await self._advance()
            except Exception:
                log.exception("scheduling failed; retrying at the next tick")

    async def _catch_up_restored(self, runs: Sequence[Run], not_started: Sequence[Run],
                                 now: dt.datetime) -> None:
        """Missed runs start or are skipped by their schedule's `catchup`; so are the
        runs of schedules left `starting` but never started.  Those a request made
        start now: they were asked for, and nothing ran."""
        scheduled = [run for run in not_started if run.expected and run.meta.catchup is not None]
        for run in not_started:
            if run not in scheduled:
                self.spawn(self.runner.start_again(run, NEVER_STARTED), "start-again")
        skips = []
        for run, reason in self.scheduler.catch_up_restored([*runs, *scheduled], now):
            if run.state == State.STARTING:
                if reason is None:
                    self.spawn(self.runner.start_again(run, NEVER_STARTED), "start-again")
                else:  # `force`: skipped is what a missed run of this schedule becomes
                    skips.append(self.transition(run, State.SKIPPED, reason, force=True,
                                                 expect={State.STARTING}))
            elif reason is None:
                self.arm_due(run)
            else:
                skips.append(self.transition(run, State.SKIPPED, reason, expect={State.SCHEDULED}))
        await asyncio.gather(*skips)

    async def create_planned(self, window: Window,
                             stale: Sequence[tuple[Run, str]] = ()) -> None:
        """The runs of a window, recorded with its clocks, and the scheduler told: in
        parts of WINDOW_PART runs (Window.split), each a transaction with its own clocks.
        `stale` runs (a reload's) are skipped each with its schedule's part."""
        parts = window.split(WINDOW_PART)
        for part, skips in zip(parts, _skips_by_part(stale, parts)):
            await self._create_part(part, skips=skips)
            self.scheduler.advanced(part)

    async def _create_part(self, window: Window, *,
                           skips: Sequence[tuple[Run, str]] = ()) -> None:
        ids = await self.store.allocate_run_ids(len(window.runs))
        new = []
        jsos: dict[str, dict[str, Any]] = {}  # each job's definition, once for the part
        rendered: RenderCache = {}  # what its runs render alike, once per job and args
        for run_id, planned in zip(ids, window.runs):
            p = planned.run
            jitter = round(random.uniform(0, planned.jitter), 3) if planned.jitter else 0.0
            meta = RunMeta(schedule=p.schedule_key, catchup=planned.catchup, jitter=jitter)
            jso = jsos.get(p.job.job_id)
            if jso is None:
                jso = jsos[p.job.job_id] = p.job.to_jso()
            one = self._bind(p.job, p.args, run_id, p.time, stop=p.stop_time, expected=True,
                             meta=meta, job_jso=jso, cache=rendered)
            missing = missing_params(p.job.params, p.args)
            if missing:
                one.error = (f"schedule of job {p.job.job_id!r} does not bind param(s) "
                             f"{', '.join(missing)}")
            one.skip_reason = planned.skip_reason
            if jitter:  # shown as `times.due`: sanity and users see when it really is due
                one.run.set_time("due", self.due_time(one.run))
            new.append(one)
        await self._record_new(new, clock=window.clock,
                               schedule_clocks=window.stored_schedule_clocks(), light=True,
                               skips=skips)

    # -- memory of unfinished runs ------------------------------------------------------

    def conditions_of(self, run: Run) -> list[BoundCondition]:
        return conditions_of(run, self._params_of)

    def host_groups(self) -> Any:
        """The jobs directory's `host_groups`, as loaded now (the runner picks hosts)."""
        return self.jobs_dir.config.host_groups

    def _params_of(self, job_id: str) -> list[str] | None:
        job = self.jobs_dir.jobs.get(job_id)
        return None if job is None else job.params

    def set_timer(self, run: Run, when: dt.datetime, callback: Callable[[], object]) -> None:
        old = self._timers.pop(run.run_id, None)
        if old:
            old.cancel()
        self._timers[run.run_id] = WallTimer(when, callback)

    def cancel_timer(self, run: Run) -> None:
        self.due.cancel(run.run_id)
        timer = self._timers.pop(run.run_id, None)
        if timer:
            timer.cancel()

    # -- recording ----------------------------------------------------------------------

    async def emit(self, events: list[dict[str, Any]]) -> None:
        """Stores and publishes events that are not run transitions (jobs, daemon)."""
        ts = format_time(utcnow())
        await self.writer.write(events=[{"ts": ts, **e} for e in events])

    async def transition(self, run: Run, to: State, message: str | None = None, *,
                         expect: Collection[State] | None = None, force: bool = False,
                         small_outputs: Sequence[Any] = (),
                         before: Sequence[dict[str, Any]] = (), at: dt.datetime | None = None,
                         **updates: Any) -> bool:
        """The one way an existing run changes state: checked, committed, then applied.

        Transitions of one run queue up.  With `expect`, a run no longer in one of
        those states (once earlier transitions committed) is left alone and False
        returned: the caller lost a race.  `updates` are run fields set with the
        state (`exit_code`, `signal`, `outputs`, `meta`).  `before` are events
        published just ahead of the transition, in the same commit (the final
        `output_appended` of a run that finishes).  `at` is when it really happened,
        if the daemon learns of it late (a program that ended during an outage): it
        goes into the run's times, and the log entry says when the daemon learned it;
        the log entry and events keep the time of the commit, so they stay in order.
        Raises `TransitionError` for a
        transition the table does not allow and `NotRecorded` if the database
        refused it; then nothing changed.
        """
        return await self.transitions(run, [Step(to, message, updates, small_outputs, before, at)],
                                      expect=expect, force=force)

    async def transitions(self, run: Run, steps: Sequence[Step], *,
                          expect: Collection[State] | None = None, force: bool = False) -> bool:
        """Several transitions of one run in one commit, as `transition` makes each: its
        own log entry and events, in order, each step recorded on the run as the steps
        before it leave it, all checked before anything is written.  A quick program
        whose end is known when its `running` is to be written costs one trip to the
        writer, not two (a burst of 2 000 `true`s: most of them)."""
        async with self.runs.turn(run.run_id):
            if expect is not None and run.state not in expect:
                return False
            changes: list[_Change] = []
            jsos: list[dict[str, Any]] = []
            entries: list[dict[str, Any]] = []
            events: list[dict[str, Any]] = []
            outputs: list[Any] = []
            state = run  # the run as the steps so far leave it: a copy past the first
            for step in steps:
                if changes:
                    if state is run:
                        state = replace(run)
                    changes[-1].apply(state)
                frm, to = state.state, step.to
                if not force and not can_transition(frm, to):
                    raise TransitionError(f"run {run.run_id} is {frm.value}; it cannot become {to.value}")
                if to == State.STARTING and self.stopping:
                    raise Unavailable(f"run {run.run_id} does not start: the daemon is shutting down")
                now = utcnow()
                change = _Change(frm, to, format_time(now), step.message, step.message or to.value,
                                 step.updates)
                if step.at is not None:
                    _happened_at(change, state, step.at, now)
                jso, entry, evs = change.record(state)
                events.extend({**e, "ts": change.ts} for e in step.before)
                events.extend(evs)
                jsos.append(jso)
                entries.append(entry)
                outputs.extend(step.small_outputs)
                changes.append(change)
            final = changes[-1].to

            def apply() -> None:
                for change in changes:
                    change.apply(run)
                self.runs.settle(run)
                if final in FINISHED:
                    self.cancel_timer(run)

            self.runs.becoming(run, final)
            try:
                await self.writer.write(jsos, entries, events, outputs=outputs, apply=apply)
            except NotRecorded:
                self.waiter.wake(run.instance)  # its claim on a slot is gone
                raise
            finally:
                self.runs.becoming(run, None)
        for change in changes:
            self._react(run, change.frm, change.to)
        return True

    async def _record_new(self, new: list[NewRun], *, clock: str | None = None,
                          schedule_clocks: dict[str, str | None] | None = None,
                          light: bool = False, skips: Sequence[tuple[Run, str]] = ()) -> None:
        """Records runs being created (one transaction, with the scheduling clocks if
        given) and arms the scheduled ones; with `light`, the book holds those light
        (RunBook.lighten: only for runs no caller holds, a window's).  `skips` are
        scheduled runs skipped in the same transaction (with the reason), those still
        scheduled once their turn comes: the runs a reload replaces."""
        async with contextlib.AsyncExitStack() as turns:
            for run, _ in skips:
                await turns.enter_async_context(self.runs.turn(run.run_id))
            skipped = [(run, reason) for run, reason in skips if run.state == State.SCHEDULED]
            await self._write_new(new, skipped, clock=clock, schedule_clocks=schedule_clocks,
                                  light=light)
        for run, _ in skipped:
            self._react(run, State.SCHEDULED, State.SKIPPED)
        for one in new:
            if one.run.state == State.SCHEDULED:
                self.arm_due(one.run)
            else:
                self.actions.on_transition(one.run, State.NEW, one.run.state)

    async def _write_new(self, new: list[NewRun], skipped: list[tuple[Run, str]], *,
                         clock: str | None, schedule_clocks: dict[str, str | None] | None,
                         light: bool) -> None:
        """The one transaction of `_record_new`, its runs applied once committed."""
        ts = format_time(utcnow())
        jsos, entries, events = [], [], []

        def record(run: Run, change: _Change) -> _Change:
            jso, entry, evs = change.record(run)
            jsos.append(jso)
            entries.append(entry)
            events.extend(evs)
            return change

        skips = [record(run, _Change(State.SCHEDULED, State.SKIPPED, ts, reason, reason))
                 for run, reason in skipped]
        changes = []
        for one in new:
            reason = one.skip_reason or one.error
            to = State.SKIPPED if one.skip_reason else State.ERROR if one.error else State.SCHEDULED
            changes.append(record(one.run, _Change(
                State.NEW, to, ts, reason, reason or f"scheduled for {one.run.times['schedule']}")))

        def apply() -> None:
            for (run, _), change in zip(skipped, skips):
                change.apply(run)
                self.runs.settle(run)
                self.cancel_timer(run)
            times: dict[tuple[tuple[str, str], ...], dict[str, str]] = {}
            for one, change in zip(new, changes):
                change.apply(one.run)
                one.run.times = shared_times(one.run.times, times)
                # The store holds its job's definition now (job_of_run reads it back):
                # a day of runs held 34 MB of their 10 000 jobs' JSON.
                one.run.job = None
                self.runs.settle(one.run, light=light)

        for run, _ in skipped:
            self.runs.becoming(run, State.SKIPPED)
        try:
            await self.writer.write(jsos, entries, events, clock=clock,
                                    schedule_clocks=schedule_clocks, apply=apply)
        finally:
            for run, _ in skipped:
                self.runs.becoming(run, None)

    def _react(self, run: Run, frm: State, to: State) -> None:
        """What follows a committed transition: the runner lets go of a finished run,
        runs waiting on this one's instance look again, actions fire."""
        if to in FINISHED and frm not in FINISHED:
            self.runner.forget(run)
        self.waiter.on_transition(run)
        self.actions.on_transition(run, frm, to)

    async def run_log(self, run: Run, message: str) -> None:
        """A message in the run's log that is not a transition (actions, signals, retries)."""
        ts = format_time(utcnow())
        entry = {"run_id": run.run_id, "ts": ts, "state": None, "message": message}
        await self.writer.write(log_entries=[entry], events=[
            {"type": "run_log", "ts": ts, "run_id": run.run_id, "job_id": run.job_id,
             "entry": entry}])

    # -- creating runs ------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        try:
            return self.jobs_dir.get_job(job_id)
        except LookupError as exc:
            raise NotFound(str(exc), "unknown_job") from None

    def check_args(self, job: Job, args: dict[str, Any]) -> dict[str, str]:
        args = {str(k): str(v) for k, v in (args or {}).items()}
        extra = sorted(set(args) - set(job.params))
        missing = missing_params(job.params, args)
        if extra or missing:
            parts = []
            if missing:
                parts.append(f"missing arg{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
            if extra:
                parts.append(f"unknown arg{'s' if len(extra) > 1 else ''} {', '.join(extra)}")
            params = ", ".join(job.params) or "none"
            raise Invalid(f"job {job.job_id!r}: {'; '.join(parts)} (its params: {params})", "bad_args")
        return args

    async def create_runs(self, job: Job, args: dict[str, str], *, times: Iterable[dt.datetime],
                          stop: dt.datetime | None = None, rerun_of: str | None = None,
                          attempt: int = 1) -> list[Run]:
        """New runs of an instance, bound now (templates rendered), scheduled or errors.
        Runs of one request render alike unless their templates use `run_id`: a burst
        of 2 000 renders the job once, not 2 000 times (half of its creation's time)."""
        times = list(times)
        ids = await self.store.allocate_run_ids(len(times))
        jso = job.to_jso()
        rendered: RenderCache = {}
        new = [self._bind(job, args, run_id, when, stop=stop, rerun_of=rerun_of, attempt=attempt,
                          job_jso=jso, cache=rendered)
               for run_id, when in zip(ids, times)]
        await self._record_new(new)
        return [n.run for n in new]

    def _bind(self, job: Job, args: dict[str, str], run_id: str, when: dt.datetime,
              **kwargs: Any) -> NewRun:
        return bind_run(job, args, run_id, when, params_of=self._params_of,
                        template_args=lambda j, a, r: self.jobs_dir.template_args(j, a, run_id=r),
                        **kwargs)

    async def job_of_run(self, run: Run) -> Job:
        """The job a run belongs to: the jobs directory's, else the copy stored with it."""
        job = self.jobs_dir.jobs.get(run.job_id)
        if job is not None:
            return job
        stored = run.job or await self.store.get_run_job(run.run_id)
        if stored is None:
            raise NotFound(f"job {run.job_id!r} of run {run.run_id} no longer exists", "unknown_job")
        return self.inline_job(stored, run.job_id)

    def inline_job(self, jso: dict[str, Any], job_id: str) -> Job:
        """A job from its JSON (ad hoc jobs, and jobs whose file is gone)."""
        ctx = self.jobs_dir.parse_context(Diagnostics())
        body = {k: v for k, v in jso.items() if k not in ("job_id",)}
        for key in ("schedule", "condition", "action"):
            if body.get(key) == []:
                del body[key]
        if body.get("expand") == {}:
            body.pop("expand")
        try:
            return parse_job(body, job_id, ctx)
        except JobError as exc:
            problems = "; ".join(d.message for d in ctx.diags.errors) or exc.message
            raise Invalid(f"invalid job: {problems}", "invalid_job") from None

    # -- due runs -----------------------------------------------------------------------

    def due_time(self, run: Run) -> dt.datetime:
        return run.schedule_time + dt.timedelta(seconds=run.meta.jitter)

    def arm_due(self, run: Run, when: dt.datetime | None = None) -> None:
        """Due at `when` (its `due_time`, if the caller has it already)."""
        self.due.add(run.run_id, self.due_time(run) if when is None else when)

    def _on_due_id(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            self.spawn(self._on_due(run), "due")

    async def _on_due(self, run: Run) -> None:
        if run.state != State.SCHEDULED or self.stopping:
            return
        if not run.conditions:
            await self.start_run(run)
            return
        try:
            conds = self.conditions_of(run)
        except ValueError as exc:
            await self.transition(run, State.ERROR, str(exc), expect={State.SCHEDULED})
            return
        if await self.transition(run, State.WAITING, expect={State.SCHEDULED}):
            self.waiter.add(run, conds)

    # -- what the waiter asks ------------------------------------------------------------

    async def start_run(self, run: Run, message: str | None = None) -> None:
        await self.runner.start_run(run, message)

    async def end_waiting(self, run: Run, state: State, message: str) -> None:
        # A condition may end a waiting run in any finished state (skip_duplicate's target).
        await self.transition(run, state, message, force=True, expect={State.WAITING})

    async def waiting_because(self, run: Run, reason: str | None) -> None:
        """Why a waiting run still waits (the waiter tells on every check): kept as the
        run's message, and logged, whenever it changes."""
        if reason is not None and reason != run.message:
            await self._note(run, reason, expect={State.WAITING})

    async def _note(self, run: Run, message: str, *, expect: Collection[State]) -> None:
        """A new message for a run that stays in its state: written with a log entry of
        that state (clients take an entry with a state as the run's message), then applied."""
        async with self.runs.turn(run.run_id):
            if run.state not in expect or run.message == message:
                return
            ts = format_time(utcnow())
            jso = {**run.to_jso(), "message": message}
            entry = {"run_id": run.run_id, "ts": ts, "state": run.state.value, "message": message}

            def apply() -> None:
                run.message = message

            await self.writer.write([jso], [entry],
                                    [{"type": "run_log", "ts": ts, "run_id": run.run_id,
                                      "job_id": run.job_id, "entry": entry}], apply=apply)

    # -- jobs ---------------------------------------------------------------------------

    async def reload_jobs(self, *, dry_run: bool = False,
                          paths: Iterable[Path] | None = None) -> dict[str, Any]:
        """Reloads the jobs directory, or only the job files in `paths` (what the watcher
        saw change); a broken file keeps its job's previous version."""
        old = self.jobs_dir
        partial = None
        if paths is not None:
            partial = await asyncio.to_thread(reload_files, old, list(paths))
        if partial is None:
            new = await asyncio.to_thread(load_jobs_dir, old.path)
            ids = set(old.jobs) | set(new.jobs)
        else:
            new, ids = partial
        for job_id in new.broken:
            if job_id in old.jobs:
                new.jobs[job_id] = old.jobs[job_id]
        problems = [str(d) for d in new.diags.errors]
        old_jsos = {j: old.jobs[j].to_jso() for j in ids if j in old.jobs}
        new_jsos = {j: new.jobs[j].to_jso() for j in ids if j in new.jobs}
        added = sorted(set(new_jsos) - set(old_jsos))
        removed = sorted(set(old_jsos) - set(new_jsos))
        changed = sorted(j for j in set(new_jsos) & set(old_jsos) if new_jsos[j] != old_jsos[j])
        result = {"added": added, "changed": changed, "removed": removed, "errors": problems}
        if dry_run:
            return result
        if problems:
            log.warning("jobs reloaded with %d problem(s):\n  %s", len(problems), "\n  ".join(problems))
        self.jobs_dir = new
        if not self.leading:  # a standby keeps its jobs current; the leader records reloads
            return result
        events = ([{"type": "job_added", "job": new_jsos[j]} for j in added]
                  + [{"type": "job_changed", "job": new_jsos[j]} for j in changed]
                  + [{"type": "job_removed", "job": old_jsos[j]} for j in removed]
                  + [{"type": "jobs_reloaded", "added": added, "changed": changed,
                      "removed": removed, "errors": problems}])
        await self.emit(events)
        if added or changed or removed:
            await self._reschedule(set(changed) | set(removed) | set(added))
        return result

    async def _reschedule(self, job_ids: set[str]) -> None:
        """After a reload: future scheduled runs of changed jobs are replaced by fresh ones.
        A schedule's old runs are skipped in the transaction that creates its new ones: a
        daemon stopped between the two lost a day of the job's runs (the clock was past
        them)."""
        async with self._scheduling:
            stale, window = self.scheduler.replan(job_ids, utcnow(), self.runs.of_jobs(job_ids))
            if window is not None:
                await self.create_planned(window, stale)
                self._replanned.set()
            elif stale:
                await self._record_new([], skips=stale)

    # -- archive and trimming -----------------------------------------------------------

    def archive_path(self) -> Any:
        """`runs.archive` from apsis.yaml, else the file beside the database."""
        return self.config.archive or default_archive_path(self.config.database)

    async def archive_runs(self, cut: dt.datetime) -> int:
        """Moves finished runs scheduled before `cut` to the archive database, in chunks
        that let the daemon's own writes through; one archiving at a time."""
        async with self._archiving:
            target = self.archive_path()
            moved = await self.store.archive(cut, target)
        if moved:
            log.info("archived %d runs scheduled before %s to %s", moved, format_time(cut), target)
        return moved

    async def _archive_loop(self) -> None:
        """Moves finished runs older than `runs.retain` to `runs.archive`, a few times a day."""
        await asyncio.sleep(self.config.archive_delay)  # not in the way of start-up
        while True:
            try:
                await self.archive_runs(utcnow() - dt.timedelta(seconds=self.config.retain))
            except Exception:
                log.exception("archiving old runs failed; trying again later")
            await asyncio.sleep(self.config.archive_every)

    async def _trim_events_loop(self) -> None:
        while True:
            try:
                await self.store.trim_events(keep_seconds=self.config.event_retention)
            except Exception:
                log.exception("trimming old events failed")
            await asyncio.sleep(3600)


class _View:
    """The runs as conditions see them."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def unfinished(self, job_id: str, args: dict[str, str]) -> list[tuple[str, State]]:
        return self._engine.runs.instance_states(job_id, args)

    async def finished_in(self, job_id: str, args: dict[str, str], states: list[str]) -> str | None:
        page = await self._engine.store.query_runs(job_id=job_id, args=args, states=states, limit=1)
        return page.runs[0]["run_id"] if page.runs else None


class _ActionContext:
    """What actions may ask of the engine."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def schedule(self, job_id: str, args: dict[str, str], *, inherit: dict[str, str]) -> Run:
        engine = self._engine
        job = engine.get_job(job_id)
        args = {**{p: inherit[p] for p in job.params if p in inherit}, **args}
        [new] = await engine.create_runs(job, engine.check_args(job, args), times=[utcnow()])
        return new

    async def retry(self, run: Run, *, when: dt.datetime) -> Run:
        engine = self._engine
        [new] = await engine.create_runs(await engine.job_of_run(run), run.args, times=[when],
                                         stop=run.stop_time, rerun_of=run.run_id,
                                         attempt=run.attempt + 1)
        return new

    async def log(self, run: Run, message: str) -> None:
        await self._engine.run_log(run, message)

    @property
    def url(self) -> str:
        return self._engine.url

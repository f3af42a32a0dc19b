"""The engine: the one place where runs change state.

Every state change goes through `transition`, which updates the in-memory run,
commits the run, its log entry and its event in one transaction (through the
group-commit writer), and only then lets the waiter and the actions react.
Only unfinished runs live in memory; history is the store's.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import random
from collections.abc import Awaitable, Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import Diagnostics
from ..jobs_dir import JobsDir
from ..lib.timefmt import UTC, format_time
from ..model.job import Job
from ..model.run import Run, instance_key
from ..model.states import FINISHED, State, TransitionError, can_transition
from .events import EventBus
from .timers import DueQueue, WallTimer
from .writer import Writer

log = logging.getLogger("apsis.engine")


def utcnow() -> dt.datetime:
    return dt.datetime.now(UTC)


class RequestError(ValueError):
    """A request the engine refuses; `code` maps to the API's status."""

    def __init__(self, message: str, code: str = "invalid", status: int = 422) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Engine:
    def __init__(self, config: Any, store: Any, jobs_dir: JobsDir) -> None:
        from .actions import Actions
        from .runner import Runner
        from .scheduler import Scheduler
        from .waiter import Waiter

        self.config = config
        self.store = store
        self.jobs_dir = jobs_dir
        self.bus = EventBus()
        self.writer = Writer(store, self.bus)
        self.runs: dict[str, Run] = {}  # unfinished runs only
        self._by_instance: dict[tuple, set[str]] = {}
        self._timers: dict[str, WallTimer] = {}
        self.due = DueQueue(self._on_due_id)
        self._tasks: set[asyncio.Task] = set()
        self.scheduler = Scheduler(self)
        self.waiter = Waiter(self)
        self.runner = Runner(self)
        self.actions = Actions(self)
        self.started_at = utcnow()
        self.stopping = False
        self.url = ""  # the API's base URL, given to programs as APSIS_URL
        self.restart_requested = False
        self.shutdown_requested = asyncio.Event()
        self._archiving = asyncio.Lock()  # the loop and `apsisctl db archive` take turns

    def request_shutdown(self, restart: bool = False) -> None:
        """Asks the daemon to stop (and, with `restart`, to start again in the same process)."""
        self.restart_requested = restart
        self.shutdown_requested.set()

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self, since: str | None = None) -> None:
        self.writer.start()
        self.spawn(self.due.run(), "due-queue")
        self.bus.last_seq = await self.store.last_seq()
        await self.runner.start()
        restored_missed = await self.restore()
        await self.scheduler.start(since or self.config.since, restored_missed)
        self.spawn(self._trim_events_loop(), "trim-events")
        if self.config.archive is not None:
            self.spawn(self._archive_loop(), "archive")
        await self.emit([{"type": "daemon", "status": "started"}])

    async def stop(self) -> None:
        """Stops deciding; running programs keep running under the agent and are reattached later."""
        self.stopping = True
        for timer in self._timers.values():
            timer.cancel()
        self.scheduler.stop()
        try:
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

    async def restore(self) -> list[Run]:
        """Picks up the unfinished runs a previous daemon left (SPEC §1.10).

        Returns the scheduled runs whose time passed while the daemon was down: the
        scheduler decides, by their schedule's `catchup`, which of them still start.
        """
        now = utcnow()
        missed: list[Run] = []
        jsos = await self.store.load_unfinished_runs()
        for jso in jsos:
            run = Run.from_jso(jso)
            self._remember(run)
        log.info("restoring %d unfinished runs", len(jsos))
        for run in list(self.runs.values()):
            if run.state in (State.NEW,):
                await self.transition(run, State.ERROR, "the daemon stopped before this run was scheduled")
            elif run.state == State.SCHEDULED:
                if run.expected and "catchup" in run.meta and self.due_time(run) < now:
                    missed.append(run)
                else:
                    self.arm_due(run)
            elif run.state == State.WAITING:
                self.waiter.add(run)
            elif run.state == State.STARTING:
                await self.transition(
                    run, State.ERROR,
                    "the daemon stopped while this run was starting: the program may or may not "
                    "have started, so it is not started again (rerun it if it is safe)")
            elif run.state in (State.RUNNING, State.STOPPING):
                await self.runner.reattach(run)
        return missed

    # -- memory of unfinished runs ------------------------------------------------------

    def _remember(self, run: Run) -> None:
        self.runs[run.run_id] = run
        self._by_instance.setdefault(run.instance, set()).add(run.run_id)

    def _forget(self, run: Run) -> None:
        self.runs.pop(run.run_id, None)
        ids = self._by_instance.get(run.instance)
        if ids is not None:
            ids.discard(run.run_id)
            if not ids:
                del self._by_instance[run.instance]
        self.cancel_timer(run)

    def runs_of_instance(self, job_id: str, args: dict[str, str]) -> list[Run]:
        """Unfinished runs of an instance."""
        return [self.runs[i] for i in self._by_instance.get(instance_key(job_id, args), ())]

    def set_timer(self, run: Run, when: dt.datetime, callback) -> None:
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
                         force: bool = False, outputs: Sequence[Any] = (),
                         before: Sequence[dict[str, Any]] = (), **updates: Any) -> None:
        """The one way a run changes state: checked, recorded, published, then reacted to.

        `before` are events published just ahead of the transition, in the same commit
        (the final `output_appended` of a run that finishes).
        """
        frm = run.state
        if not force and not can_transition(frm, to):
            raise TransitionError(f"run {run.run_id} is {frm.value}; it cannot become {to.value}")
        now = utcnow()
        ts = format_time(now)
        run.state = to
        run.times[to.value] = ts
        run.message = message
        for key, value in updates.items():
            setattr(run, key, value)
        entry = {"run_id": run.run_id, "ts": ts, "state": to.value, "message": message or to.value}
        events = [
            *({**e, "ts": ts} for e in before),
            {"type": "run_transition", "ts": ts, "run": run.summary(), "from": frm.value, "to": to.value},
            {"type": "run_log", "ts": ts, "run_id": run.run_id, "entry": entry},
        ]
        jso = run.to_jso(with_job=frm == State.NEW)
        if to in FINISHED:
            self._forget(run)
        else:
            self._remember(run)
        await self.writer.write([jso], [entry], events, outputs=outputs)
        if to in FINISHED and frm not in FINISHED:
            self.runner.forget(run)
        self.waiter.on_transition(run, frm, to)
        self.actions.on_transition(run, frm, to)

    async def run_log(self, run: Run | str, message: str) -> None:
        """A message in the run's log that is not a transition (actions, signals, retries)."""
        run_id = run if isinstance(run, str) else run.run_id
        ts = format_time(utcnow())
        entry = {"run_id": run_id, "ts": ts, "state": None, "message": message}
        await self.writer.write(log_entries=[entry],
                                events=[{"type": "run_log", "ts": ts, "run_id": run_id, "entry": entry}])

    # -- creating runs ------------------------------------------------------------------

    def get_job(self, job_id: str) -> Job:
        try:
            return self.jobs_dir.get_job(job_id)
        except LookupError as exc:
            raise RequestError(str(exc), "unknown_job", 404) from None

    def check_args(self, job: Job, args: dict[str, Any]) -> dict[str, str]:
        args = {str(k): str(v) for k, v in (args or {}).items()}
        extra = sorted(set(args) - set(job.params))
        missing = [p for p in job.params if p not in args]
        if extra or missing:
            parts = []
            if missing:
                parts.append(f"missing arg{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
            if extra:
                parts.append(f"unknown arg{'s' if len(extra) > 1 else ''} {', '.join(extra)}")
            params = ", ".join(job.params) or "none"
            raise RequestError(f"job {job.job_id!r}: {'; '.join(parts)} (its params: {params})",
                               "bad_args", 422)
        return args

    async def create_runs(self, job: Job, args: dict[str, str], *, times: Iterable[dt.datetime],
                          stop: dt.datetime | None = None, rerun_of: str | None = None,
                          attempt: int = 1, expected: bool = False, skip_reason: str | None = None,
                          jitter: float = 0.0) -> list[Run]:
        """New runs of an instance, bound now (templates rendered), scheduled or skipped."""
        times = list(times)
        ids = await self.store.allocate_run_ids(len(times))
        runs = [self.bind_run(job, args, run_id, when, stop=stop, rerun_of=rerun_of,
                              attempt=attempt, expected=expected) for run_id, when in zip(ids, times)]
        await self.schedule_new(runs, skip_reason=skip_reason, jitter=jitter)
        return runs

    def bind_run(self, job: Job, args: dict[str, str], run_id: str, when: dt.datetime, *,
                 stop: dt.datetime | None = None, rerun_of: str | None = None, attempt: int = 1,
                 expected: bool = False) -> Run:
        from ..template import TemplateError, render_value

        run = Run(run_id=run_id, job_id=job.job_id, args=dict(args), labels=job.labels,
                  rerun_of=rerun_of, attempt=attempt, ad_hoc=job.ad_hoc, expected=expected,
                  job=job.to_jso())
        run.set_time("schedule", when)
        if stop is not None:
            run.set_time("stop", stop)
        try:
            targs = self.jobs_dir.template_args(job, args, run_id=run_id)
            run.program = render_value(job.program.to_jso(), targs)
            run.conditions = [render_value(c.to_jso(), targs) for c in job.conditions]
            run.actions = [render_value(a.to_jso(), targs) for a in job.actions]
        except (TemplateError, ValueError, LookupError) as exc:
            run.meta["bind_error"] = f"cannot bind job {job.job_id!r}: {exc}"
        return run

    async def schedule_new(self, runs: list[Run], *, skip_reason: str | None = None,
                           jitter: float = 0.0, clock: str | None = None) -> None:
        """Records new runs (one transaction for all of them) and arms their timers."""
        now = utcnow()
        ts = format_time(now)
        jsos, entries, events = [], [], []
        for run in runs:
            bind_error = run.meta.pop("bind_error", None)
            to = State.SKIPPED if skip_reason else State.ERROR if bind_error else State.SCHEDULED
            message = skip_reason or bind_error or f"scheduled for {run.times['schedule']}"
            run.state = to
            run.times["new"] = ts
            run.times[to.value] = ts
            run.message = skip_reason or bind_error
            if jitter and to == State.SCHEDULED:
                run.meta["jitter"] = round(random.uniform(0, jitter), 3)
            entry = {"run_id": run.run_id, "ts": ts, "state": to.value, "message": message or to.value}
            jsos.append(run.to_jso(with_job=True))
            entries.append(entry)
            events.append({"type": "run_transition", "ts": ts, "run": run.summary(),
                           "from": State.NEW.value, "to": to.value})
            events.append({"type": "run_log", "ts": ts, "run_id": run.run_id, "entry": entry})
            if to == State.SCHEDULED:
                self._remember(run)
        await self.writer.write(jsos, entries, events, clock=clock)
        for run in runs:
            if run.state == State.SCHEDULED:
                self.arm_due(run)
            else:
                self.actions.on_transition(run, State.NEW, run.state)

    def due_time(self, run: Run) -> dt.datetime:
        return run.schedule_time + dt.timedelta(seconds=run.meta.get("jitter", 0.0))

    def arm_due(self, run: Run) -> None:
        self.due.add(run.run_id, self.due_time(run))

    def _on_due_id(self, run_id: str) -> None:
        run = self.runs.get(run_id)
        if run is not None:
            self.spawn(self._on_due(run), "due")

    async def _on_due(self, run: Run) -> None:
        if run.state != State.SCHEDULED:
            return
        if run.conditions:
            await self.transition(run, State.WAITING)
            self.waiter.add(run)
        else:
            await self.runner.start_run(run)

    # -- operations (SPEC §1.1) ---------------------------------------------------------

    def get_live_run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    async def _require(self, run_id: str, states: Iterable[State], op: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            jso = await self.store.get_run(run_id)
            if jso is None:
                raise RequestError(f"no run {run_id}", "unknown_run", 404)
            state = jso["state"]
        else:
            state = run.state.value
        states = set(states)
        if run is None or run.state not in states:
            allowed = ", ".join(sorted(s.value for s in states))
            raise RequestError(f"cannot {op} run {run_id}: it is {state} (only {allowed} runs)",
                               "bad_state", 409)
        return run

    async def op_skip(self, run_id: str) -> Run:
        run = await self._require(run_id, {State.SCHEDULED, State.WAITING}, "skip")
        self.cancel_timer(run)
        self.waiter.remove(run)
        await self.transition(run, State.SKIPPED, "skipped by request")
        return run

    async def op_start(self, run_id: str) -> Run:
        run = await self._require(run_id, {State.SCHEDULED, State.WAITING}, "start")
        self.cancel_timer(run)
        self.waiter.remove(run)
        await self.runner.start_run(run, message="started by request, ignoring its conditions")
        return run

    async def op_stop(self, run_id: str) -> Run:
        run = await self._require(run_id, {State.RUNNING}, "stop")
        await self.runner.stop_run(run, "stopped by request")
        return run

    async def op_signal(self, run_id: str, signal: str) -> Run:
        from ..program import parse_signal

        try:
            name = parse_signal(signal)
        except ValueError as exc:
            raise RequestError(str(exc), "bad_signal", 422) from None
        run = await self._require(run_id, {State.RUNNING, State.STOPPING}, "signal")
        await self.runner.signal_run(run, name)
        await self.run_log(run, f"sent {name} by request")
        return run

    async def op_mark(self, run_id: str, state: str) -> dict[str, Any]:
        try:
            to = State.parse(state)
        except ValueError as exc:
            raise RequestError(str(exc), "bad_state_name", 422) from None
        if to not in FINISHED:
            raise RequestError(f"can only mark a run success, failure, error or skipped, not {to.value}",
                               "bad_state_name", 422)
        jso = await self.store.get_run(run_id)
        if jso is None:
            raise RequestError(f"no run {run_id}", "unknown_run", 404)
        run = Run.from_jso(jso)
        if run.state not in FINISHED or run.state == to:
            raise RequestError(f"cannot mark run {run_id} {to.value}: it is {run.state.value} "
                               "(only finished runs can be marked, to another finished state)",
                               "bad_state", 409)
        await self.transition(run, to, f"marked {to.value} (was {run.state.value})")
        return run.to_jso()

    async def op_rerun(self, run_id: str) -> Run:
        jso = await self.store.get_run(run_id)
        if jso is None:
            raise RequestError(f"no run {run_id}", "unknown_run", 404)
        if State(jso["state"]) not in FINISHED:
            raise RequestError(f"cannot rerun run {run_id}: it is {jso['state']} (only finished runs)",
                               "bad_state", 409)
        job = self.jobs_dir.jobs.get(jso["job_id"])
        if job is None:
            stored = await self.store.get_run_job(run_id)
            if stored is None:
                raise RequestError(f"job {jso['job_id']!r} of run {run_id} no longer exists",
                                   "unknown_job", 404)
            job = self.inline_job(stored, jso["job_id"])
        [run] = await self.create_runs(job, jso["args"], times=[utcnow()], rerun_of=run_id,
                                       attempt=int(jso.get("attempt") or 1) + 1)
        return run

    def inline_job(self, jso: dict[str, Any], job_id: str) -> Job:
        """A job from its JSON (ad hoc jobs, and jobs whose file is gone)."""
        from ..errors import JobError
        from ..jobs_dir import parse_job

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
            raise RequestError(f"invalid job: {problems}", "invalid_job", 422) from None

    # -- reading ------------------------------------------------------------------------

    async def get_run_jso(self, run_id: str) -> dict[str, Any] | None:
        run = self.runs.get(run_id)
        if run is not None:
            return run.to_jso()
        return await self.store.get_run(run_id)

    async def read_output(self, run_id: str, output_id: str, start: int = 0,
                          end: int | None = None) -> bytes | None:
        """Bytes of an output: from the spool while running, from the store after."""
        live = self.runs.get(run_id)
        if live is not None:
            data = await self.runner.read_live_output(live, output_id, start, end)
            if data is not None:
                return data
        return await self.store.get_output(run_id, output_id, start, end)

    async def list_outputs(self, run_id: str) -> list[dict[str, Any]]:
        live = self.runs.get(run_id)
        if live is not None:
            outputs = await self.runner.live_outputs(live)
            if outputs is not None:
                return outputs
        return await self.store.list_outputs(run_id)

    # -- jobs ---------------------------------------------------------------------------

    async def reload_jobs(self, *, dry_run: bool = False) -> dict[str, Any]:
        """Reloads the jobs directory; a broken file keeps its job's previous version."""
        from ..jobs_dir import load_jobs_dir

        new = await asyncio.to_thread(load_jobs_dir, self.jobs_dir.path)
        old = self.jobs_dir
        for job_id in new.broken:
            if job_id in old.jobs:
                new.jobs[job_id] = old.jobs[job_id]
        problems = [str(d) for d in new.diags.errors]
        old_jsos = {j: job.to_jso() for j, job in old.jobs.items()}
        new_jsos = {j: job.to_jso() for j, job in new.jobs.items()}
        added = sorted(set(new_jsos) - set(old_jsos))
        removed = sorted(set(old_jsos) - set(new_jsos))
        changed = sorted(j for j in set(new_jsos) & set(old_jsos) if new_jsos[j] != old_jsos[j])
        result = {"added": added, "changed": changed, "removed": removed, "errors": problems}
        if dry_run:
            return result
        if problems:
            log.warning("jobs reloaded with %d problem(s):\n  %s", len(problems), "\n  ".join(problems))
        self.jobs_dir = new
        events = ([{"type": "job_added", "job": new_jsos[j]} for j in added]
                  + [{"type": "job_changed", "job": new_jsos[j]} for j in changed]
                  + [{"type": "job_removed", "job": old_jsos[j]} for j in removed]
                  + [{"type": "jobs_reloaded", "added": added, "changed": changed,
                      "removed": removed, "errors": problems}])
        await self.emit(events)
        if added or changed or removed:
            await self.scheduler.reschedule(set(changed) | set(removed) | set(added))
        return result

    def archive_path(self) -> Path:
        """`runs.archive` from apsis.yaml, else the file beside the database."""
        from ..store import default_archive_path

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

"""What the API can read and ask of the daemon: one typed facade over engine and store.

The API talks only to this: it never reaches into the store, the writer, the
event bus or the jobs directory.  Refusals are the engine's typed errors
(engine/errors.py); the API picks their HTTP status.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..model.job import Job
from ..model.run import Run
from ..model.states import FINISHED, State
from ..program import parse_signal
from .errors import Conflict, Invalid, NotFound, NotLeader, Unavailable

if TYPE_CHECKING:
    from .core import Engine
    from .events import Event, Follower, Subscription
    from .spools import OutputStream


class Service:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    # -- the daemon ---------------------------------------------------------------------

    @property
    def config(self) -> Any:
        return self._engine.config

    @property
    def started_at(self) -> dt.datetime:
        return self._engine.started_at

    @property
    def last_seq(self) -> int:
        return self._engine.bus.last_seq

    def spawn(self, coro: Any, name: str) -> Any:
        return self._engine.spawn(coro, name)

    def request_shutdown(self, restart: bool = False) -> None:
        self._engine.request_shutdown(restart)

    def role(self) -> dict[str, Any]:
        """This daemon's place among those sharing its database (GET /alive): alone on
        its database it is the leader, at epoch 0."""
        leadership = self._engine.leadership
        if leadership is None:
            return {"role": "leader", "leader": self._engine.url or None, "epoch": 0}
        # A daemon taking over says `leader` once it takes writes (its runs restored).
        role = leadership.role if self._engine.restored else "standby"
        return {"role": role, "leader": leadership.leader, "epoch": leadership.epoch}

    @property
    def failovers(self) -> int:
        """Times this daemon took over from another leader."""
        leadership = self._engine.leadership
        return 0 if leadership is None else leadership.failovers

    def _leading(self) -> None:
        """Refuses a write on a standby, saying where the leader is."""
        leadership = self._engine.leadership
        if leadership is not None and leadership.role != "leader":
            raise NotLeader(leadership.leader, leadership.leader_node)
        if not self._engine.restored:
            raise Unavailable("taking over as leader: restoring the unfinished runs; "
                              "try again in a moment")

    async def readable(self) -> str | None:
        """None if the store answers reads, else what is wrong (for /alive)."""
        return await self._engine.store.read_problem()

    def counts(self) -> dict[str, Any]:
        """Cheap numbers for /control/stats and /metrics."""
        engine = self._engine
        return {"jobs": len(engine.jobs_dir.jobs), "unfinished_runs": len(engine.runs),
                "event_subscribers": engine.bus.subscriber_count, "last_seq": engine.bus.last_seq}

    def commit_quantiles(self, quantiles: Collection[float] = (0.5, 0.9, 0.99, 1.0)) -> dict[float, float]:
        """Database commit times (s) of the last 1 000 writes at those quantiles (nearest
        rank); empty before the first commit."""
        ordered = sorted(self._engine.writer.commit_seconds)
        if not ordered:
            return {}
        return {q: ordered[min(len(ordered) - 1, int(len(ordered) * q))] for q in quantiles}

    @property
    def commit_count(self) -> int:
        return len(self._engine.writer.commit_seconds)

    async def store_stats(self) -> dict[str, Any]:
        return await self._engine.store.stats()

    async def runs_by_state(self) -> dict[str, int]:
        return await self._engine.store.count_runs_by_state()

    # -- events -------------------------------------------------------------------------

    def subscribe(self, maxsize: int, predicate: Callable[[Event], bool] | None) -> Subscription:
        return self._engine.bus.subscribe(maxsize, predicate)

    def follow(self) -> Follower:
        """A reader of the stream that keeps its own place (WS /events)."""
        return self._engine.bus.follow()

    def listen(self, callback: Callable[[Event], None]) -> None:
        self._engine.bus.listen(callback)

    def listen_encoded(self, callback: Callable[[Event, str | None], None]) -> None:
        self._engine.bus.listen_encoded(callback)

    async def events_since(self, *args: Any, **kwargs: Any) -> Any:
        return await self._engine.store.events_since(*args, **kwargs)

    async def last_stored_seq(self) -> int:
        return await self._engine.store.last_seq()

    async def first_retained_seq(self) -> int:
        return await self._engine.store.first_retained_seq()

    # -- jobs ---------------------------------------------------------------------------

    def jobs(self) -> list[Job]:
        return sorted(self._engine.jobs_dir.jobs.values(), key=lambda j: j.job_id)

    def has_job(self, job_id: str) -> bool:
        """Whether `job_id` is a job of the jobs directory."""
        return job_id in self._engine.jobs_dir.jobs

    async def job(self, job_id: str) -> Job:
        """A job of the jobs directory, else an ad hoc job: as its newest run was bound with
        it (the store keeps every run's job definition), so it can be read and run again
        by id, across restarts, for as long as its runs are kept."""
        engine = self._engine
        try:
            return engine.get_job(job_id)
        except NotFound:
            stored = await self._adhoc_definition(job_id)
            if stored is None:
                raise
        return engine.inline_job(stored, job_id)

    async def _adhoc_definition(self, job_id: str) -> dict[str, Any] | None:
        store = self._engine.store
        page = await store.query_runs(job_id=job_id, limit=1)
        if not page.runs:
            return None
        jso = await store.get_run_job(page.runs[0]["run_id"])
        # Only ad hoc jobs: a job whose file was removed stays removed.
        return jso if jso and jso.get("ad_hoc") else None

    def inline_job(self, jso: dict[str, Any], job_id: str) -> Job:
        return self._engine.inline_job(jso, job_id)

    async def reload_jobs(self, *, dry_run: bool = False) -> dict[str, Any]:
        self._leading()
        return await self._engine.reload_jobs(dry_run=dry_run)

    # -- runs: reading ------------------------------------------------------------------

    async def get_run(self, run_id: str) -> dict[str, Any] | None:
        """A run's JSON: from memory while unfinished, else from the store."""
        run = self._engine.runs.peek(run_id)
        if run is not None:
            return run.to_jso()
        return await self._engine.store.get_run(run_id)

    async def query_runs(self, **filters: Any) -> Any:
        return await self._engine.store.query_runs(**filters)

    async def query_run_summaries(self, **filters: Any) -> Any:
        """As `query_runs`, each run as the JSON text of its summary (tables of many runs)."""
        return await self._engine.store.query_run_summaries(**filters)

    async def run_log(self, run_id: str) -> list[dict[str, Any]]:
        return await self._engine.store.run_log(run_id)

    async def read_output(self, run_id: str, output_id: str, start: int = 0,
                          end: int | None = None) -> bytes | None:
        """Bytes of an output: from the spool while running, from the store after."""
        engine = self._engine
        live = engine.runs.peek(run_id)
        if live is not None:
            data = await engine.runner.read_live_output(live, output_id, start, end)
            if data is not None:
                return data
        return await engine.store.get_output(run_id, output_id, start, end)

    async def open_live_output(self, run_id: str, output_id: str, start: int,
                               end: int | None) -> OutputStream | None:
        """A running program's output streamed from its spool, capped at `output.max_bytes`;
        None when the store is where to read it."""
        live = self._engine.runs.peek(run_id)
        return None if live is None else await self._engine.runner.open_live_output(
            live, output_id, start, end)

    async def list_outputs(self, run_id: str) -> list[dict[str, Any]]:
        engine = self._engine
        live = engine.runs.peek(run_id)
        if live is not None:
            outputs = await engine.runner.live_outputs(live)
            if outputs is not None:
                return outputs
        return await engine.store.list_outputs(run_id)

    # -- runs: commands (SPEC §1.1) -----------------------------------------------------

    def check_args(self, job: Job, args: dict[str, Any]) -> dict[str, str]:
        return self._engine.check_args(job, args)

    async def create_runs(self, job: Job, args: dict[str, str], *, times: list[dt.datetime],
                          stop: dt.datetime | None = None) -> list[Run]:
        self._leading()
        return await self._engine.create_runs(job, self.check_args(job, args), times=times,
                                              stop=stop)

    async def _unfinished(self, run_id: str, states: Collection[State], op: str) -> Run:
        """The run, if it is in one of `states`; else the error that says why not."""
        engine = self._engine
        run = engine.runs.get(run_id)
        if run is not None and run.state in states:
            return run
        if run is None:
            jso = await engine.store.get_run(run_id)
            if jso is None:
                raise NotFound(f"no run {run_id}", "unknown_run")
            state = jso["state"]
        else:
            state = run.state.value
        allowed = ", ".join(sorted(s.value for s in states))
        raise Conflict(f"cannot {op} run {run_id}: it is {state} (only {allowed} runs)")

    async def skip(self, run_id: str) -> Run:
        self._leading()
        waiting = {State.SCHEDULED, State.WAITING}
        run = await self._unfinished(run_id, waiting, "skip")
        await self._take_back(run)
        await self._engine.transition(run, State.SKIPPED, "skipped by request", expect=waiting)
        return run

    async def start(self, run_id: str) -> Run:
        self._leading()
        run = await self._unfinished(run_id, {State.SCHEDULED, State.WAITING}, "start")
        await self._take_back(run)
        await self._engine.start_run(run, message="started by request, ignoring its conditions")
        return run

    async def _take_back(self, run: Run) -> None:
        """A scheduled or waiting run taken out of the engine's hands by a request."""
        self._engine.cancel_timer(run)
        self._engine.waiter.remove(run)

    async def stop(self, run_id: str) -> Run:
        self._leading()
        run = await self._unfinished(run_id, {State.RUNNING}, "stop")
        await self._engine.runner.stop_run(run, "stopped by request")
        return run

    async def signal(self, run_id: str, signal: str) -> Run:
        self._leading()
        try:
            name = parse_signal(signal)
        except ValueError as exc:
            raise Invalid(str(exc), "bad_signal") from None
        run = await self._unfinished(run_id, {State.RUNNING, State.STOPPING}, "signal")
        await self._engine.runner.signal_run(run, name)
        await self._engine.run_log(run, f"sent {name} by request")
        return run

    async def mark(self, run_id: str, to: State) -> Run:
        """A finished run moved to another finished state (history corrected, no actions)."""
        self._leading()
        if to not in FINISHED:
            raise Invalid(f"can only mark a run success, failure, error or skipped, not {to.value}",
                          "bad_state_name")
        jso = await self._engine.store.get_run(run_id)
        if jso is None:
            raise NotFound(f"no run {run_id}", "unknown_run")
        run = Run.from_jso(jso)
        if run.state not in FINISHED or run.state == to:
            raise Conflict(f"cannot mark run {run_id} {to.value}: it is {run.state.value} "
                           "(only finished runs can be marked, to another finished state)")
        await self._engine.transition(run, to, f"marked {to.value} (was {run.state.value})")
        return run

    async def rerun(self, run_id: str) -> Run:
        self._leading()
        engine = self._engine
        jso = await engine.store.get_run(run_id)
        if jso is None:
            raise NotFound(f"no run {run_id}", "unknown_run")
        if State(jso["state"]) not in FINISHED:
            raise Conflict(f"cannot rerun run {run_id}: it is {jso['state']} (only finished runs)")
        old = Run.from_jso(jso)
        job = await engine.job_of_run(old)
        # It keeps the stop time: a service rerun in the day still ends with the day.
        [run] = await engine.create_runs(job, jso["args"], times=[dt.datetime.now(dt.UTC)],
                                         stop=old.stop_time, rerun_of=run_id,
                                         attempt=int(jso.get("attempt") or 1) + 1)
        return run

    # -- maintenance --------------------------------------------------------------------

    def archive_path(self) -> Path:
        return Path(self._engine.archive_path())

    async def archive_runs(self, cut: dt.datetime) -> int:
        self._leading()
        return await self._engine.archive_runs(cut)

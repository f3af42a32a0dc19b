"""Starting, watching, stopping and finishing programs.

Processes run under the agent (apsis.agent), which outlives the daemon: a run
is reattached after a restart and finishes with its real exit status and its
whole output.  `starting` is committed before the agent is asked to spawn, so a
crash in between is seen on restart and never silently repeated.

A program with `host:` runs under an agent on that host, reached over ssh (see
hosts.py); the host is recorded in `run.meta["proc"]`, so every later request
(signals, output, reattach) goes back there.  Local spool files are read
directly; remote ones through the agent's `read`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..lib.timefmt import format_duration
from ..model.run import Run
from ..model.states import State
from ..store.outputs import split_cap
from .hosts import HostAgents, HostPicker, RemoteSettings
from .timers import WallTimer

if TYPE_CHECKING:
    from ..agent.client import AgentClient, ProcStatus
    from .core import Engine

log = logging.getLogger("apsis.runner")

OUTPUT_POLL_SECONDS = 0.5
RECONCILE_SECONDS = 15.0
REMOTE_OUTPUT_POLL_SECONDS = 1.0  # a request over ssh per output, not a stat
REMOTE_POLL_TIMEOUT = 5.0  # a slow host delays only its own output events
FETCH_CHUNK = 4 << 20  # the agent's largest read
# Outputs up to this size are stored in the same transaction as the run's end.
SMALL_OUTPUT_BYTES = 256 * 1024


def program_env(run: Run, url: str) -> dict[str, str]:
    """The APSIS_* environment every program gets (SPEC §1.2)."""
    env = {
        "APSIS_RUN_ID": run.run_id,
        "APSIS_JOB_ID": run.job_id,
        "APSIS_URL": url,
        "APSIS_ARGS": json.dumps(run.args, sort_keys=True),
    }
    for name, value in run.args.items():
        env["APSIS_ARG_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()] = str(value)
    return env


def output_ids(program: dict[str, Any]) -> list[str]:
    return ["stdout", "stderr"] if program.get("outputs") == "split" else ["output"]


class Runner:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.agent: Any = None  # the local agent
        self.hosts = HostAgents(RemoteSettings.from_config(engine.config), self._follow)
        self._picker = HostPicker()
        # Per run: its timers by kind, and its outputs' last seen lengths.
        self._timers: dict[str, dict[str, WallTimer]] = {}
        self._lengths: dict[str, dict[str, int]] = {}
        self._finishing: set[str] = set()
        # Exits reported before the run was recorded as running (a quick program).
        self._early_exits: dict[str, Any] = {}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        from ..agent.client import AgentClient, local_connect_command

        state_dir = self.engine.config.agent_dir
        self.agent = AgentClient()
        idle = os.environ.get("APSIS_AGENT_IDLE_TIMEOUT")  # tests use a short one
        await self.agent.connect(local_connect_command(state_dir, idle_timeout=float(idle) if idle else None))
        self._follow(self.agent)
        self.engine.spawn(self._watch_outputs(), "output-watch")
        self.engine.spawn(self._watch_remote_outputs(), "remote-output-watch")
        self.engine.spawn(self._reconcile_loop(), "reconcile")

    def _follow(self, agent: AgentClient) -> None:
        """Finishes runs as this agent reports their exits (the local one, or a host's)."""
        self.engine.spawn(self._follow_exits(agent), "agent-exits")

    async def stop(self) -> None:
        for timers in self._timers.values():
            for timer in timers.values():
                timer.cancel()
        if self.agent is not None:
            await self.agent.close()
        await self.hosts.close()

    def forget(self, run: Run) -> None:
        for timer in self._timers.pop(run.run_id, {}).values():
            timer.cancel()
        self._lengths.pop(run.run_id, None)

    def _timer(self, run: Run, kind: str, when: dt.datetime, coro_fn) -> None:
        timers = self._timers.setdefault(run.run_id, {})
        old = timers.pop(kind, None)
        if old:
            old.cancel()
        timers[kind] = WallTimer(when, lambda: self.engine.spawn(coro_fn(), kind))

    # -- starting -----------------------------------------------------------------------

    async def start_run(self, run: Run, message: str | None = None) -> None:
        engine = self.engine
        # Committed before anything is spawned (SPEC §1.10).
        await engine.transition(run, State.STARTING, message)
        program = run.program or {}
        kind = program.get("type")
        try:
            if kind == "no-op":
                await engine.transition(run, State.RUNNING)
                self._arm_noop(run)
            elif kind in ("shell", "program"):
                await self._spawn(run, program)
            elif isinstance(kind, str) and "." in kind:
                await self._start_extension(run, program)
            else:
                await engine.transition(run, State.ERROR, f"cannot run program type {kind!r}")
        except Exception as exc:  # never leave a run stuck in starting
            log.exception("starting %s failed", run.run_id)
            if run.state == State.STARTING:
                await engine.transition(run, State.ERROR, f"could not start: {exc}")

    async def _spawn(self, run: Run, program: dict[str, Any]) -> None:
        from ..agent.client import AgentConnectionError, AgentError

        engine = self.engine
        placed = await self._place(run, program)
        if placed is None:
            return
        agent, host, user, group = placed
        where = f" on {_host_label(host, user)}" if host else ""
        argv = (["/bin/bash", "-c", program["command"]] if program["type"] == "shell"
                else list(program["argv"]))
        env = {**program.get("env", {}), **program_env(run, getattr(engine, "url", ""))}
        try:
            proc = await agent.start(argv, proc_id=run.run_id, env=env, cwd=program.get("cwd"),
                                     outputs=program.get("outputs", "combined"))
        except AgentConnectionError as exc:
            # A start is never resent: ask whether it arrived before the connection went.
            found = await self._started_anyway(run, agent, exc, where)
            if found is None:
                return
            proc = found
        except AgentError as exc:
            await engine.transition(run, State.ERROR, f"could not start the program{where}: {exc}")
            return
        run.meta["proc"] = {"host": host, "pid": proc.pid, "outputs": dict(proc.outputs)}
        if host:
            run.meta["proc"]["user"] = user
            if group:
                run.meta["proc"]["host_group"] = group
        run.outputs = [{"output_id": oid, "length": 0} for oid in output_ids(program)]
        via = f" (host group {group!r})" if group else ""
        await engine.transition(run, State.RUNNING, f"pid {proc.pid}{where}{via}")
        self._arm_limits(run)
        early = self._early_exits.pop(run.run_id, None)
        if early is not None:
            await self._finish(run, early.exit_code, early.signal)

    async def _place(
        self, run: Run, program: dict[str, Any]
    ) -> tuple[AgentClient, str | None, str | None, str | None] | None:
        """(agent, host, user, host group) where the program runs; None once the run
        is an error because the host cannot be reached."""
        name = program.get("host")
        if not name:
            return self.agent, None, None, None
        user = program.get("user") or None
        host, group = self._picker.pick(name, self.engine.jobs_dir.config.host_groups)
        try:
            agent = await self.hosts.get(host, user)
            if not agent.connected:
                # Wait out a reconnect here, where a failure surely means "not started".
                await agent.ping()
        except Exception as exc:  # AgentConnectionError (with ssh's own words), a bad host name
            via = f" (host group {group!r})" if group else ""
            await self.engine.transition(
                run, State.ERROR, f"cannot reach host {_host_label(host, user)}{via}: {exc}")
            return None
        return agent, host, user, group

    async def _started_anyway(
        self, run: Run, agent: AgentClient, exc: Exception, where: str
    ) -> ProcStatus | None:
        """The process, if a start lost with its connection did reach the agent; else
        None, once the run is an error that says whether it may have started."""
        from ..agent.client import AgentError

        try:
            proc = await agent.status(run.run_id)
            if proc.state != "error":
                return proc
            message = f"could not start the program{where}: {proc.message}"
        except AgentError as problem:
            if problem.code == "not_found":
                message = f"could not start the program{where}: {exc}"
            else:
                message = (f"the connection{where} was lost while starting the program, and "
                           f"whether it started is unknown ({problem}); it is not started again")
        await self.engine.transition(run, State.ERROR, message)
        return None

    def _arm_limits(self, run: Run) -> None:
        """The program's timeout and the schedule's stop time, if any."""
        program = run.program or {}
        started = run.time_of(State.RUNNING) or dt.datetime.now(dt.UTC)
        timeout = program.get("timeout")
        if timeout:
            when = started + dt.timedelta(seconds=timeout["duration"])
            self._timer(run, "timeout", when, lambda: self._timeout(run))
        if run.stop_time is not None:
            self._timer(run, "stop-time", run.stop_time,
                        lambda: self.stop_run(run, "stop time reached", success=True))

    def _arm_noop(self, run: Run) -> None:
        started = run.time_of(State.RUNNING) or dt.datetime.now(dt.UTC)
        duration = float((run.program or {}).get("duration") or 0)
        self._timer(run, "no-op", started + dt.timedelta(seconds=duration), lambda: self._finish_noop(run))
        if run.stop_time is not None:
            self._timer(run, "stop-time", run.stop_time,
                        lambda: self.stop_run(run, "stop time reached", success=True))

    async def _finish_noop(self, run: Run) -> None:
        if run.state not in (State.RUNNING, State.STOPPING):
            return
        success = (run.program or {}).get("success", True)
        to = State.SUCCESS if success is True else State.FAILURE if success is False else State.ERROR
        await self.engine.transition(run, to, None if to == State.SUCCESS else "no-op program: success is "
                                     f"{json.dumps(success)}")

    # -- reattaching after a restart ----------------------------------------------------

    async def _start_extension(self, run: Run, program: dict[str, Any]) -> None:
        """A program class named by its dotted path: it runs in the daemon's event loop."""
        from ..errors import Diagnostics
        from ..lib.strict import Fields
        from ..parse_context import ParseContext
        from ..program import PROGRAMS

        ctx = ParseContext(diags=Diagnostics())
        cls = PROGRAMS.get(program["type"])
        fields = Fields({k: v for k, v in program.items() if k != "type"}, "program", ctx.diags)
        instance = cls.from_jso(fields, ctx)  # type: ignore[attr-defined]
        await self.engine.transition(run, State.RUNNING)

        async def execute() -> None:
            try:
                state, message = await instance.execute(run.to_jso())
                to = State.parse(state)
            except Exception as exc:
                to, message = State.ERROR, f"{program['type']} failed: {exc}"
            if run.state in (State.RUNNING, State.STOPPING):
                await self.engine.transition(run, to if to.finished else State.ERROR, message)

        self.engine.spawn(execute(), "extension-program")

    async def reattach(self, run: Run) -> None:
        kind = (run.program or {}).get("type")
        if isinstance(kind, str) and "." in kind:
            await self.engine.transition(
                run, State.ERROR, f"the daemon restarted while the {kind} program ran; it runs "
                "inside the daemon, so it cannot be reattached (rerun it if that is safe)")
        elif kind == "no-op":
            self._arm_noop(run)
        elif _is_remote(run):
            # In the background: an unreachable host must not hold up the daemon's start.
            self.engine.spawn(self._reattach_process(run), "reattach")
        else:
            await self._reattach_process(run)

    async def _reattach_process(self, run: Run) -> None:
        from ..agent.client import AgentError

        try:
            agent = await self._agent_for(run)
            status = await agent.status(run.run_id)
        except Exception as exc:
            if _is_remote(run) and _transient(exc):
                proc = run.meta.get("proc") or {}
                await self.engine.run_log(
                    run, f"cannot reach host {_host_label(proc.get('host'), proc.get('user'))} to "
                    f"reattach ({exc}); trying again every {RECONCILE_SECONDS:g}s")
                self._arm_limits(run)
                return
            reason = exc if isinstance(exc, AgentError) else f"{type(exc).__name__}: {exc}"
            await self.engine.transition(
                run, State.ERROR, f"the program's process was lost while the daemon was down ({reason})")
            return
        if status.state == "running":
            await self.engine.run_log(run, "reattached after a daemon restart")
            self._arm_limits(run)
        else:
            await self._settle(run, status)

    async def _settle(self, run: Run, status: ProcStatus) -> None:
        """Finishes a run whose process the agent says has ended."""
        if status.state == "exited":
            await self._finish(run, status.exit_code, status.signal)
        elif status.state != "running" and run.state in (State.RUNNING, State.STOPPING):
            await self.engine.transition(
                run, State.ERROR, "the program's process was lost while the daemon was down "
                f"({status.message or status.state})")

    async def _agent_for(self, run: Run) -> AgentClient:
        """The agent the run's process is under: the local one, or its host's."""
        proc = run.meta.get("proc") or {}
        if not proc.get("host"):
            return self.agent
        return await self.hosts.get(proc["host"], proc.get("user"))

    # -- finishing ----------------------------------------------------------------------

    async def _follow_exits(self, agent: AgentClient) -> None:
        async for proc in agent.exits():
            run = self.engine.runs.get(proc.proc_id)
            if run is None:
                continue
            if run.state == State.STARTING:
                self._early_exits[run.run_id] = proc
            elif run.state in (State.RUNNING, State.STOPPING):
                self.engine.spawn(self._finish(run, proc.exit_code, proc.signal), "finish")

    async def _finish(self, run: Run, exit_code: int | None, signal: str | int | None) -> None:
        # An exit is reported at least once (and reattach asks too): finish once.
        if run.run_id in self._finishing or run.state not in (State.RUNNING, State.STOPPING):
            return
        self._finishing.add(run.run_id)
        try:
            small = await self._store_outputs(run)
            signame = _signal_name(signal)
            stopping = run.state == State.STOPPING
            stop_meta = run.meta.get("stop", {})
            if run.meta.get("timed_out"):
                to, msg = State.FAILURE, f"timed out after {format_duration(run.meta['timed_out'])}"
            elif stopping and stop_meta.get("success"):
                to, msg = State.SUCCESS, stop_meta.get("reason")
            elif stopping:
                to, msg = State.FAILURE, stop_meta.get("reason", "stopped")
            elif exit_code == 0 and signame is None:
                to, msg = State.SUCCESS, None
            elif signame is not None:
                to, msg = State.FAILURE, f"killed by {signame}"
            else:
                to, msg = State.FAILURE, f"exit code {exit_code}"
            if run.state in (State.RUNNING, State.STOPPING):
                await self.engine.transition(run, to, msg, exit_code=exit_code, signal=signame,
                                             outputs=small, before=self._final_growth(run))
            try:
                await (await self._agent_for(run)).clean(run.run_id)
            except Exception:
                log.warning("could not clean the agent's files of %s", run.run_id, exc_info=True)
        finally:
            self._finishing.discard(run.run_id)

    async def _store_outputs(self, run: Run) -> list[Any]:
        """Stores big outputs now; returns small ones to go in with the final transition."""
        store = self.engine.store
        max_bytes = self.engine.config.output_max_bytes
        outputs, small = [], []
        if _is_remote(run):
            agent = await self._agent_for(run)
            for output_id in output_ids(run.program or {}):
                length, prepared = await self._store_remote_output(agent, run, output_id, max_bytes)
                if prepared is not None:
                    small.append(prepared)
                outputs.append({"output_id": output_id, "length": length})
            run.outputs = outputs
            return small
        for output_id in output_ids(run.program or {}):
            path = self.spool_path(run, output_id)
            if path is None or not path.exists():
                continue
            if path.stat().st_size <= SMALL_OUTPUT_BYTES:
                prepared = await asyncio.to_thread(
                    _prepare_small, store, run.run_id, output_id, path, max_bytes)
                small.append(prepared)
                outputs.append({"output_id": output_id, "length": prepared.length})
            else:
                info = await store.store_output_from_file(run.run_id, output_id, path, max_bytes=max_bytes)
                outputs.append({"output_id": output_id, "length": info["length"]})
        run.outputs = outputs
        return small

    def _final_growth(self, run: Run) -> list[dict[str, Any]]:
        """`output_appended` for the bytes the watchers had not reported yet: a run that
        finishes between two looks still tells event clients its final lengths."""
        seen = self._lengths.get(run.run_id, {})
        return [{"type": "output_appended", "run_id": run.run_id, "output_id": o["output_id"],
                 "length": o["length"]}
                for o in run.outputs or [] if (o.get("length") or 0) > seen.get(o["output_id"], 0)]

    async def _store_remote_output(self, agent: AgentClient, run: Run, output_id: str,
                                   max_bytes: int | None) -> tuple[int, Any]:
        """(stored length, small output or None): a small remote spool is read into
        memory to go in with the final transition; a big one is stored now from a local
        temp file, fetched a chunk at a time.

        The temp file is sparse: over the cap only the head and the tail that the store
        keeps are fetched, so neither memory nor ssh carries the middle of a huge output.
        """
        store = self.engine.store
        length = (await agent.read(run.run_id, output_id, 0, 0)).length
        if length <= SMALL_OUTPUT_BYTES:
            data = await _read_remote_range(agent, run.run_id, output_id, 0, length)
            prepared = await asyncio.to_thread(store.prepare_small_output, run.run_id, output_id, data, max_bytes)
            return prepared.length, prepared
        cap = split_cap(length, max_bytes)
        ranges = [(0, length)] if cap is None else [(0, cap[0]), (length - cap[1], length)]
        fd, name = tempfile.mkstemp(prefix=f".apsis-fetch-{run.run_id}-{output_id}-",
                                    dir=Path(self.engine.config.database).parent)
        path = Path(name)
        try:
            with os.fdopen(fd, "r+b") as file:
                file.truncate(length)
                for offset, end in ranges:
                    while offset < end:
                        chunk = await agent.read(run.run_id, output_id, offset, min(FETCH_CHUNK, end - offset))
                        if not chunk.data:
                            break
                        await asyncio.to_thread(_write_at, file, offset, chunk.data)
                        offset += len(chunk.data)
            info = await store.store_output_from_file(run.run_id, output_id, path, max_bytes=max_bytes)
            return info["length"], None
        finally:
            path.unlink(missing_ok=True)

    # -- stopping and signals -----------------------------------------------------------

    async def _timeout(self, run: Run) -> None:
        if run.state != State.RUNNING:
            return
        timeout = (run.program or {}).get("timeout") or {}
        run.meta["timed_out"] = timeout.get("duration", 0)
        await self.engine.run_log(run, f"timeout: sending {timeout.get('signal', 'SIGTERM')}")
        await self._send(run, timeout.get("signal", "SIGTERM"))
        self._arm_kill(run)

    async def stop_run(self, run: Run, reason: str, *, success: bool = False) -> None:
        if run.state != State.RUNNING:
            return
        run.meta["stop"] = {"reason": reason, "success": success}
        await self.engine.transition(run, State.STOPPING, reason)
        if (run.program or {}).get("type") == "no-op":
            await self.engine.transition(run, State.SUCCESS if success else State.FAILURE, reason)
            return
        stop = (run.program or {}).get("stop") or {}
        await self._send(run, stop.get("signal", "SIGTERM"))
        self._arm_kill(run)

    def _arm_kill(self, run: Run) -> None:
        grace = float(((run.program or {}).get("stop") or {}).get("grace_period", 60))
        when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace)

        async def kill() -> None:
            if run.state in (State.RUNNING, State.STOPPING):
                await self.engine.run_log(run, f"still running {grace:g}s after the stop signal: SIGKILL")
                await self._send(run, "SIGKILL")

        self._timer(run, "kill", when, kill)

    async def signal_run(self, run: Run, signal: str) -> None:
        from .core import RequestError

        if (run.program or {}).get("type") == "no-op":
            raise RequestError("a no-op program has no process to signal", "bad_program", 409)
        await self._send(run, signal)

    async def _send(self, run: Run, signal: str) -> None:
        try:
            await (await self._agent_for(run)).signal(run.run_id, signal)
        except Exception as exc:
            await self.engine.run_log(run, f"could not send {signal}: {exc}")

    # -- live output --------------------------------------------------------------------

    def spool_path(self, run: Run, output_id: str) -> Path | None:
        """The local spool file of a local run; None for a remote run (its spool is there)."""
        if _is_remote(run):
            return None
        path = run.meta.get("proc", {}).get("outputs", {}).get(output_id)
        return Path(path) if path else None

    async def read_live_output(self, run: Run, output_id: str, start: int, end: int | None) -> bytes | None:
        if run.state not in (State.RUNNING, State.STOPPING) or run.run_id in self._finishing:
            return None
        if _is_remote(run):
            try:
                agent = await self._agent_for(run)
                return await _read_remote_range(agent, run.run_id, output_id, start, end)
            except Exception as exc:  # unreachable, or already cleaned: the store answers
                log.debug("live output of %s: %s", run.run_id, exc)
                return None
        path = self.spool_path(run, output_id)
        if path is None or not path.exists():
            return None
        return await asyncio.to_thread(_read_range, path, start, end)

    async def live_outputs(self, run: Run) -> list[dict[str, Any]] | None:
        if run.state not in (State.RUNNING, State.STOPPING) or run.run_id in self._finishing:
            return None
        outputs = []
        for output_id in output_ids(run.program or {}):
            if _is_remote(run):
                length = await self._remote_length(run, output_id)
                if length is None:
                    return None
            else:
                path = self.spool_path(run, output_id)
                length = path.stat().st_size if path is not None and path.exists() else 0
            outputs.append({"output_id": output_id, "length": length, "content_type": "application/octet-stream"})
        return outputs

    async def _remote_length(self, run: Run, output_id: str, *, connect: bool = True) -> int | None:
        """The size of a remote spool now (a zero-byte read); None if it cannot be had.

        Without `connect`, only an existing connection is used.
        """
        proc = run.meta.get("proc") or {}
        agent: AgentClient | None
        try:
            if connect:
                agent = await self._agent_for(run)
            else:
                agent = self.hosts.connected(proc["host"], proc.get("user"))
                if agent is None or not agent.connected:
                    return None
            return (await agent.read(run.run_id, output_id, 0, 0)).length
        except Exception as exc:
            log.debug("output length of %s: %s", run.run_id, exc)
            return None

    def _process_runs(self) -> list[Run]:
        """Unfinished runs with a process (not no-op)."""
        return [run for run in self.engine.runs.values()
                if run.state in (State.RUNNING, State.STOPPING) and (run.program or {}).get("type") != "no-op"]

    async def _watch_outputs(self) -> None:
        """Publishes `output_appended` as local spool files grow (a stat per run per tick)."""
        while True:
            await asyncio.sleep(OUTPUT_POLL_SECONDS)
            sizes = []
            for run in self._process_runs():
                if _is_remote(run):
                    continue
                for output_id in output_ids(run.program or {}):
                    path = self.spool_path(run, output_id)
                    try:
                        sizes.append((run.run_id, output_id, os.stat(path).st_size if path else 0))
                    except OSError:
                        continue
            await self._emit_growth(sizes)

    async def _watch_remote_outputs(self) -> None:
        """The same for remote spools, a zero-byte `read` each, in a loop of its own so
        that a slow host never delays local events. Never connects: reattach does."""
        while True:
            await asyncio.sleep(REMOTE_OUTPUT_POLL_SECONDS)
            asks = [(run, output_id) for run in self._process_runs()
                    if _is_remote(run) and run.run_id not in self._finishing
                    for output_id in output_ids(run.program or {})]
            if not asks:
                continue

            async def length(run: Run, output_id: str) -> int | None:
                try:
                    return await asyncio.wait_for(self._remote_length(run, output_id, connect=False),
                                                  REMOTE_POLL_TIMEOUT)
                except TimeoutError:
                    return None

            lengths = await asyncio.gather(*(length(r, o) for r, o in asks))
            await self._emit_growth([(r.run_id, o, n) for (r, o), n in zip(asks, lengths) if n is not None])

    async def _emit_growth(self, sizes: list[tuple[str, str, int]]) -> None:
        """One `output_appended` per output whose length changed since the last look."""
        events = []
        for run_id, output_id, length in sizes:
            if run_id not in self.engine.runs:
                continue  # finished meanwhile: its final length is in its run
            seen = self._lengths.setdefault(run_id, {})
            if length != seen.get(output_id, 0):
                seen[output_id] = length
                events.append({"type": "output_appended", "run_id": run_id,
                               "output_id": output_id, "length": length})
        if events:
            try:
                await self.engine.emit(events)
            except Exception:
                log.exception("could not record output events")

    async def _reconcile_loop(self) -> None:
        """A safety net for a lost exit notice, and how a remote run whose host was
        unreachable at reattach comes back: ask its agent about every running run."""
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            by_host: dict[tuple[str | None, str | None], list[Run]] = {}
            for run in self._process_runs():
                proc = run.meta.get("proc") or {}
                by_host.setdefault((proc.get("host"), proc.get("user")), []).append(run)
            # Hosts in parallel: one unreachable host does not hold up the others.
            await asyncio.gather(*(self._reconcile(runs) for runs in by_host.values()))

    async def _reconcile(self, runs: list[Run]) -> None:
        """Runs of one host, one after the other; stops at the first sign it is unreachable."""
        for run in runs:
            try:
                status = await (await self._agent_for(run)).status(run.run_id)
                if status.state != "running":
                    await self._settle(run, status)
            except Exception as exc:
                log.debug("reconciling %s: %s", run.run_id, exc)
                if _is_remote(run) and _transient(exc):
                    return


def _signal_name(signal: str | int | None) -> str | None:
    if signal is None or signal == 0:
        return None
    if isinstance(signal, int):
        import signal as _signal

        try:
            return _signal.Signals(signal).name
        except ValueError:
            return str(signal)
    return str(signal)


def _is_remote(run: Run) -> bool:
    return bool((run.meta.get("proc") or {}).get("host"))


def _host_label(host: str | None, user: str | None) -> str:
    return f"{user}@{host}" if user else str(host)


def _transient(exc: Exception) -> bool:
    """A failure to reach an agent, as opposed to an answer from it."""
    from ..agent.client import AgentConnectionError, AgentError

    return isinstance(exc, AgentConnectionError) or (isinstance(exc, AgentError) and exc.code == "timeout")


async def _read_remote_range(agent: AgentClient, proc_id: str, output_id: str, start: int,
                             end: int | None) -> bytes:
    """Bytes [start, end) of a remote spool (to its current end if `end` is None)."""
    parts = []
    offset = start
    while end is None or offset < end:
        want = FETCH_CHUNK if end is None else min(FETCH_CHUNK, end - offset)
        chunk = await agent.read(proc_id, output_id, offset, want)
        parts.append(chunk.data)
        offset += len(chunk.data)
        if not chunk.data or offset >= chunk.length:
            break
    return b"".join(parts)


def _write_at(file: Any, offset: int, data: bytes) -> None:
    file.seek(offset)
    file.write(data)


def _read_range(path: Path, start: int, end: int | None) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(-1 if end is None else max(0, end - start))


def _prepare_small(store: Any, run_id: str, output_id: str, path: Path, max_bytes: int) -> Any:
    """Reads and compresses a small spool file (in a thread)."""
    return store.prepare_small_output(run_id, output_id, path.read_bytes(), max_bytes)

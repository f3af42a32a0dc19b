"""Starting, watching, stopping and finishing programs.

Processes run under the agent (apsis.agent), which outlives the daemon: a run
is reattached after a restart and finishes with its real exit status and its
whole output.  `starting` is committed before the agent is asked to spawn, so a
crash in between is seen on restart and never silently repeated.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..lib.timefmt import format_duration
from ..model.run import Run
from ..model.states import State
from .timers import WallTimer

if TYPE_CHECKING:
    from .core import Engine

log = logging.getLogger("apsis.runner")

OUTPUT_POLL_SECONDS = 0.5
RECONCILE_SECONDS = 15.0
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
    def __init__(self, engine: "Engine") -> None:
        self.engine = engine
        self.agent: Any = None
        self._timers: dict[tuple[str, str], WallTimer] = {}
        self._lengths: dict[tuple[str, str], int] = {}
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
        self.engine.spawn(self._follow_exits(), "agent-exits")
        self.engine.spawn(self._watch_outputs(), "output-watch")
        self.engine.spawn(self._reconcile_loop(), "reconcile")

    async def stop(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        if self.agent is not None:
            await self.agent.close()

    def forget(self, run: Run) -> None:
        for key in [k for k in self._timers if k[0] == run.run_id]:
            self._timers.pop(key).cancel()
        for key in [k for k in self._lengths if k[0] == run.run_id]:
            del self._lengths[key]

    def _timer(self, run: Run, kind: str, when: dt.datetime, coro_fn) -> None:
        key = (run.run_id, kind)
        old = self._timers.pop(key, None)
        if old:
            old.cancel()
        self._timers[key] = WallTimer(when, lambda: self.engine.spawn(coro_fn(), kind))

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
            else:
                await engine.transition(run, State.ERROR, f"cannot run program type {kind!r}")
        except Exception as exc:  # never leave a run stuck in starting
            log.exception("starting %s failed", run.run_id)
            if run.state == State.STARTING:
                await engine.transition(run, State.ERROR, f"could not start: {exc}")

    async def _spawn(self, run: Run, program: dict[str, Any]) -> None:
        from ..agent.client import AgentError

        engine = self.engine
        if program.get("host"):
            await engine.transition(run, State.ERROR,
                                    f"remote host {program['host']!r}: running on other hosts over "
                                    "ssh is not available in this version")
            return
        argv = (["/bin/bash", "-c", program["command"]] if program["type"] == "shell"
                else list(program["argv"]))
        env = {**program.get("env", {}), **program_env(run, getattr(engine, "url", ""))}
        try:
            proc = await self.agent.start(argv, proc_id=run.run_id, env=env, cwd=program.get("cwd"),
                                          outputs=program.get("outputs", "combined"))
        except AgentError as exc:
            await engine.transition(run, State.ERROR, f"could not start the program: {exc}")
            return
        run.meta["proc"] = {"host": None, "pid": proc.pid, "outputs": dict(proc.outputs)}
        run.outputs = [{"output_id": oid, "length": 0} for oid in output_ids(program)]
        await engine.transition(run, State.RUNNING, f"pid {proc.pid}")
        self._arm_limits(run)
        early = self._early_exits.pop(run.run_id, None)
        if early is not None:
            await self._finish(run, early.exit_code, early.signal)

    def _arm_limits(self, run: Run) -> None:
        """The program's timeout and the schedule's stop time, if any."""
        program = run.program or {}
        started = run.time_of(State.RUNNING) or dt.datetime.now(dt.timezone.utc)
        timeout = program.get("timeout")
        if timeout:
            when = started + dt.timedelta(seconds=timeout["duration"])
            self._timer(run, "timeout", when, lambda: self._timeout(run))
        if run.stop_time is not None:
            self._timer(run, "stop-time", run.stop_time,
                        lambda: self.stop_run(run, "stop time reached", success=True))

    def _arm_noop(self, run: Run) -> None:
        started = run.time_of(State.RUNNING) or dt.datetime.now(dt.timezone.utc)
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

    async def reattach(self, run: Run) -> None:
        kind = (run.program or {}).get("type")
        if kind == "no-op":
            self._arm_noop(run)
            return
        try:
            status = await self.agent.status(run.run_id)
        except Exception as exc:
            await self.engine.transition(
                run, State.ERROR, f"the program's process was lost while the daemon was down ({exc})")
            return
        if status.state == "running":
            await self.engine.run_log(run, "reattached after a daemon restart")
            self._arm_limits(run)
        elif status.state == "exited":
            await self._finish(run, status.exit_code, status.signal)
        else:
            await self.engine.transition(
                run, State.ERROR, "the program's process was lost while the daemon was down "
                f"({status.message or status.state})")

    # -- finishing ----------------------------------------------------------------------

    async def _follow_exits(self) -> None:
        async for proc in self.agent.exits():
            run = self.engine.runs.get(proc.proc_id)
            if run is None:
                continue
            if run.state == State.STARTING:
                self._early_exits[run.run_id] = proc
            elif run.state in (State.RUNNING, State.STOPPING):
                self.engine.spawn(self._finish(run, proc.exit_code, proc.signal), "finish")

    async def _finish(self, run: Run, exit_code: int | None, signal: str | int | None) -> None:
        if run.run_id in self._finishing:
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
                                             outputs=small)
            try:
                await self.agent.clean(run.run_id)
            except Exception:
                log.warning("could not clean the agent's files of %s", run.run_id, exc_info=True)
        finally:
            self._finishing.discard(run.run_id)

    async def _store_outputs(self, run: Run) -> list[Any]:
        """Stores big outputs now; returns small ones to go in with the final transition."""
        store = self.engine.store
        max_bytes = self.engine.config.output_max_bytes
        outputs, small = [], []
        for output_id in output_ids(run.program or {}):
            path = self.spool_path(run, output_id)
            if path is None or not path.exists():
                continue
            if path.stat().st_size <= SMALL_OUTPUT_BYTES:
                prepared = await asyncio.to_thread(
                    lambda: store.prepare_small_output(run.run_id, output_id, path.read_bytes(), max_bytes))
                small.append(prepared)
                outputs.append({"output_id": output_id, "length": prepared.length})
            else:
                info = await store.store_output_from_file(run.run_id, output_id, path, max_bytes=max_bytes)
                outputs.append({"output_id": output_id, "length": info["length"]})
        run.outputs = outputs
        return small

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
        when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=grace)

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
            await self.agent.signal(run.run_id, signal)
        except Exception as exc:
            await self.engine.run_log(run, f"could not send {signal}: {exc}")

    # -- live output --------------------------------------------------------------------

    def spool_path(self, run: Run, output_id: str) -> Path | None:
        path = run.meta.get("proc", {}).get("outputs", {}).get(output_id)
        return Path(path) if path else None

    async def read_live_output(self, run: Run, output_id: str, start: int, end: int | None) -> bytes | None:
        if run.state not in (State.RUNNING, State.STOPPING) or run.run_id in self._finishing:
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
            path = self.spool_path(run, output_id)
            length = path.stat().st_size if path is not None and path.exists() else 0
            outputs.append({"output_id": output_id, "length": length, "content_type": "application/octet-stream"})
        return outputs

    async def _watch_outputs(self) -> None:
        """Publishes `output_appended` as spool files grow (a stat per running run per tick)."""
        while True:
            await asyncio.sleep(OUTPUT_POLL_SECONDS)
            events = []
            for run in list(self.engine.runs.values()):
                if run.state not in (State.RUNNING, State.STOPPING) or (run.program or {}).get("type") == "no-op":
                    continue
                for output_id in output_ids(run.program or {}):
                    path = self.spool_path(run, output_id)
                    try:
                        length = os.stat(path).st_size if path else 0
                    except OSError:
                        continue
                    key = (run.run_id, output_id)
                    if length != self._lengths.get(key, 0):
                        self._lengths[key] = length
                        events.append({"type": "output_appended", "run_id": run.run_id,
                                       "output_id": output_id, "length": length})
            if events:
                try:
                    await self.engine.emit(events)
                except Exception:
                    log.exception("could not record output events")

    async def _reconcile_loop(self) -> None:
        """A safety net for a lost exit notice: ask the agent about every running run."""
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            for run in list(self.engine.runs.values()):
                if run.state not in (State.RUNNING, State.STOPPING) or (run.program or {}).get("type") == "no-op":
                    continue
                try:
                    status = await self.agent.status(run.run_id)
                except Exception:
                    continue
                if status.state == "exited":
                    await self._finish(run, status.exit_code, status.signal)


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


def _read_range(path: Path, start: int, end: int | None) -> bytes:
    with open(path, "rb") as f:
        f.seek(start)
        return f.read(-1 if end is None else max(0, end - start))

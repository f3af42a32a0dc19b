"""Starting, watching, stopping and finishing programs.

The runner binds a run's program (`apsis.program.bind_program`) and calls the bound
program's `start`, `reattach`, `signal` and `stop`; the program acts through a
`ProgramContext` the runner gives it (`_Control` below): transitions, timers, and
processes under an agent. The runner never asks what type a program is.

Processes run under the agent (apsis.agent), which outlives the daemon: a run is
reattached after a restart and finishes with its real exit status and its whole
output. `starting` is committed before the agent is asked to spawn, so a crash in
between is seen on restart and never silently repeated. A program with `host:` runs
under an agent on that host, reached over ssh (hosts.py); the host is recorded in
`run.meta.proc`, so every later request (signals, output, reattach) goes back there.
Outputs are read through a `Spool` (spools.py), local or remote alike, and watched
for growth by `OutputWatch` (output_watch.py).

A run also records its `origin` (the host and local agent dir of the daemon that
started it): a daemon that takes over from another (SPEC §1.14) finds a local process
under that daemon's agent, on this host directly, on another host over ssh. A run
whose agent cannot be reached is retried, and becomes an error that says so once
`ha.host_lost` has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import re
import signal as _signal
import socket
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from ..agent.client import (
    AgentClient,
    AgentConnectionError,
    AgentError,
    ProcStatus,
    local_connect_command,
)
from ..lib.timefmt import format_duration, parse_time
from ..model.run import Origin, ProcInfo, Run
from ..model.states import State
from ..program import BoundProgram, NotSignalable, ProcessSpec, bind_program
from ..program.sudo import SudoRefused, as_user
from .errors import Conflict, DiskFull
from .hosts import HostAgents, HostKey, HostPicker, RemoteSettings
from .output_watch import OutputWatch
from .ports import RunnerHost, Step
from .runbook import LIVE
from .spools import LocalSpool, OutputStream, RemoteSpool, Spool
from .timers import WallTimer


log = logging.getLogger("apsis.runner")

RECONCILE_SECONDS = 15.0
# Runs whose `starting` is being written, at most: of a burst of 2 000 due at once, the
# first are spawned (and their `running` written) while the next become `starting`,
# instead of all 2 000 being written before the first is spawned. Held only until the
# commit, so a slow agent or host holds up nobody else's start.
STARTING_AHEAD = 128


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


def exit_outcome(run: Run, status: ProcStatus, timed_out: float | None) -> tuple[State, str | None]:
    """The final state and message of a run whose process the agent says has ended.

    An exit status that cannot be known (the agent was killed while the program ran)
    is an error that says so, never a failure: a failure would trigger retries of work
    that may well have succeeded.
    """
    if status.state == "lost":
        return State.ERROR, (f"{status.message or 'the agent lost track of the process'}; "
                             "its output up to then is kept")
    if status.state != "exited":
        return State.ERROR, f"the program's process was lost ({status.message or status.state})"
    signame = _signal_name(status.signal)
    if timed_out:
        return State.FAILURE, f"timed out after {format_duration(timed_out)}"
    if run.state == State.STOPPING:
        # Stopping is how a service is meant to end (as in Apsis): ending after the stop
        # signal is a success, being killed once the grace period is over is not.
        reason = run.meta.stop_reason or "stopped"
        if signame == "SIGKILL":
            return State.FAILURE, f"{reason}; killed by SIGKILL"
        return State.SUCCESS, reason
    if status.exit_code == 0 and signame is None:
        return State.SUCCESS, None
    if signame is not None:
        return State.FAILURE, f"killed by {signame}"
    return State.FAILURE, f"exit code {status.exit_code}"


class Runner:
    def __init__(self, host: RunnerHost) -> None:
        self.host = host
        self.agent: AgentClient | None = None  # the local one
        self.origin: Origin | None = None  # this daemon's host and agent dir, once started
        self.hosts = HostAgents(RemoteSettings.from_config(host.config), self._follow)
        self._picker = HostPicker()
        self.outputs = OutputWatch(self._watched_spools, self._live_job, host.emit)
        # Per run: its bound program, timers by name, spool, and a timeout that fired.
        self._programs: dict[str, BoundProgram] = {}
        self._timers: dict[str, dict[str, WallTimer]] = {}
        self._spools: dict[str, Spool] = {}
        self._timed_out: dict[str, float] = {}
        self._finishing: set[str] = set()
        self._starting_slots = asyncio.Semaphore(STARTING_AHEAD)
        # Exits reported before the agent answered the start (a quick program).
        self._early_exits: dict[str, ProcStatus] = {}
        # Processes the agent started whose `running` is being committed: an exit that
        # comes meanwhile is finished at once (its transition queues behind `running`).
        self._spawned: dict[str, ProcInfo] = {}

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        self.agent = AgentClient()
        idle = os.environ.get("APSIS_AGENT_IDLE_TIMEOUT")  # tests use a short one
        agent_dir = os.path.abspath(self.host.config.agent_dir)
        await self.agent.connect(local_connect_command(
            agent_dir, idle_timeout=float(idle) if idle else None))
        self.origin = Origin(socket.gethostname(), agent_dir)
        self._follow(self.agent)
        self.host.spawn(self.outputs.watch(LocalSpool), "output-watch")
        self.host.spawn(self.outputs.watch(RemoteSpool), "remote-output-watch")
        self.host.spawn(self._reconcile_loop(), "reconcile")

    def _follow(self, agent: AgentClient) -> None:
        """Finishes runs as this agent reports their exits (the local one, or a host's)."""
        agent.on_exit(self._exited)

    async def stop(self) -> None:
        for timers in self._timers.values():
            for timer in timers.values():
                timer.cancel()
        if self.agent is not None:
            await self.agent.close()
        await self.hosts.close()

    def forget(self, run: Run) -> None:
        """Drops what the runner holds for a run that is finished."""
        for timer in self._timers.pop(run.run_id, {}).values():
            timer.cancel()
        for per_run in (self._programs, self._spools, self._timed_out, self._early_exits,
                        self._spawned):
            per_run.pop(run.run_id, None)
        self.outputs.forget(run.run_id)

    def _bound(self, run: Run) -> BoundProgram:
        """The run's bound program; ValueError if its rendered program is not valid."""
        program = self._programs.get(run.run_id)
        if program is None:
            program = self._programs[run.run_id] = bind_program(run.program or {})
        return program

    def _control(self, run: Run) -> _Control:
        return _Control(self, run)

    def _timer(self, run: Run, name: str, when: dt.datetime,
               action: Callable[[], Awaitable[None]]) -> None:
        if run.state.finished:
            return
        timers = self._timers.setdefault(run.run_id, {})
        old = timers.pop(name, None)
        if old:
            old.cancel()
        timers[name] = WallTimer(when, lambda: self.host.spawn(action(), name))

    def _arm_stop_time(self, run: Run) -> None:
        if run.stop_time is not None and run.state == State.RUNNING:
            self._timer(run, "stop-time", run.stop_time,
                        lambda: self.stop_run(run, "stop time reached"))

    # -- the operations the engine calls ------------------------------------------------

    async def start_run(self, run: Run, message: str | None = None) -> None:
        try:
            program = self._bound(run)
        except ValueError as exc:  # a rendered value that is not valid: this run only
            await self.host.transition(run, State.ERROR, str(exc),
                                       expect={State.SCHEDULED, State.WAITING})
            return
        # Committed before anything is spawned (SPEC §1.10), with where it is spawned:
        # a daemon taking over asks that agent whether it started. A run with conditions
        # was just found to meet them: its `starting` is its claim (`max_running` counts
        # it), made at once, with no wait for a slot between the check and the claim.
        async with self._starting_slots if not run.conditions else contextlib.nullcontext():
            if not await self.host.transition(run, State.STARTING, message,
                                              expect={State.SCHEDULED, State.WAITING},
                                              meta=run.meta.but(origin=self.origin)):
                return
        try:
            await program.start(self._control(run))
        except Exception as exc:  # never leave a run stuck in starting
            log.exception("starting %s failed", run.run_id)
            message = f"could not start: {exc}"
            await _until_recorded(lambda: self.host.transition(
                run, State.ERROR, message, expect={State.STARTING}))
            return
        self._arm_stop_time(run)

    async def recover_start(self, run: Run) -> bool | None:
        """A run left `starting` by a previous daemon: True once its program, found
        started, has taken it on; False if it surely never started; None if unknown."""
        try:
            program = self._bound(run)
        except ValueError:
            return None
        return await program.recover_start(self._control(run))

    async def start_again(self, run: Run, message: str) -> None:
        """Starts a run left `starting` whose program surely never started: from
        `starting`, where it still is, so no other start can race this one."""
        try:
            program = self._bound(run)
            await self.host.run_log(run, message)
            await program.start(self._control(run))
        except Exception as exc:
            log.exception("starting %s again failed", run.run_id)
            await self.host.transition(run, State.ERROR, f"could not start: {exc}",
                                       expect={State.STARTING})
            return
        self._arm_stop_time(run)

    async def reattach(self, run: Run) -> None:
        """A run left running or stopping by a previous daemon. In the background: an
        unreachable host must not hold up the daemon's start."""
        self.host.spawn(self._reattach(run), "reattach")

    async def _reattach(self, run: Run) -> None:
        try:
            program = self._bound(run)
        except ValueError as exc:
            await self.host.transition(run, State.ERROR, f"cannot reattach: {exc}", expect=LIVE)
            return
        await program.reattach(self._control(run))
        self._arm_stop_time(run)

    async def stop_run(self, run: Run, reason: str) -> None:
        meta = run.meta.but(stop_reason=reason)
        if await self.host.transition(run, State.STOPPING, reason, expect={State.RUNNING}, meta=meta):
            await self._bound(run).stop(self._control(run))

    async def signal_run(self, run: Run, signal: str) -> None:
        try:
            await self._bound(run).signal(self._control(run), signal)
        except NotSignalable as exc:
            raise Conflict(str(exc), code="bad_program") from None

    # -- processes ----------------------------------------------------------------------

    async def _start_process(self, run: Run, spec: ProcessSpec) -> bool:
        placed = await self._place(run, spec)
        if placed is None:
            return False
        agent, host, user, group = placed
        where = f" on {_host_label(host, user)}" if host else ""
        env = {**spec.env, **program_env(run, self.host.url)}
        argv, cwd = spec.argv, spec.cwd
        if spec.user and not host:  # this machine, as that user (program/sudo.py)
            try:
                argv, cwd = await as_user(spec.user, argv, env, cwd)
            except SudoRefused as exc:
                await self.host.transition(run, State.ERROR, str(exc), expect={State.STARTING})
                return False
            env, where = {}, f" as {spec.user}"
        timeout = self.hosts.settings.start_timeout if host else None
        try:
            proc = await agent.start(argv, proc_id=run.run_id, env=env, cwd=cwd,
                                     outputs="split" if spec.outputs == "split" else "combined",
                                     timeout=timeout)
        except AgentConnectionError as exc:
            # A start is never resent: ask whether it arrived before the connection went.
            found = await self._started_anyway(run, agent, exc, where)
            if found is None:
                return False
            proc = found
        except AgentError as exc:
            message = f"could not start the program{where}: {exc}"
            if host and exc.code == "timeout":  # it may yet arrive there: never resent
                message = (f"cannot reach host {_host_label(host, user)}: {exc}; the program "
                           "may have started there, and is not started again")
            await self.host.transition(run, State.ERROR, message, expect={State.STARTING})
            return False
        info = ProcInfo(pid=proc.pid or 0, outputs=dict(proc.outputs), host=host,
                        user=user if host else None, host_group=group)
        via = f" (host group {group!r})" if group else ""
        steps = [Step(State.RUNNING, f"pid {proc.pid}{where}{via}",
                      {"meta": run.meta.but(proc=info, origin=self.origin),
                       "outputs": [{"output_id": oid, "length": 0} for oid in proc.outputs]})]
        self._spawned[run.run_id] = info
        try:
            # Ended already (a quick program, or a busy loop): its end goes in with
            # `running`, in one commit, if its outputs are at hand.
            spool = self._ended_spool(run)
            if spool is not None:
                self._finishing.add(run.run_id)  # a repeated exit waits for this one
                steps.append(await self._ending(run, spool, self._early_exits.pop(run.run_id)))
            # The program runs: that must be recorded, even if only once space is back.
            if not await _until_recorded(lambda: self.host.transitions(
                    run, steps, expect={State.STARTING})):
                return False
        finally:
            self._spawned.pop(run.run_id, None)
            self._finishing.discard(run.run_id)
        if spool is not None:
            await self._clean(spool)
            return True
        early = self._early_exits.pop(run.run_id, None)
        if early is not None:  # after the program has armed its limits: finishing drops them
            self.host.spawn(self._finish(run, early), "finish")
        return True

    def _ended_spool(self, run: Run) -> Spool | None:
        """The spool of a run being started whose exit is known, if storing its outputs
        waits for nothing (a read in a thread or over ssh would delay `running`)."""
        early = self._early_exits.get(run.run_id)
        if early is None:
            return None
        spool = self._spool(run)
        return spool if spool is not None and spool.stores_at_once(early.lengths) else None

    async def _place(
        self, run: Run, spec: ProcessSpec
    ) -> tuple[AgentClient, str | None, str | None, str | None] | None:
        """(agent, host, user, host group) where the program runs; None once the run
        is an error because the host cannot be reached."""
        if not spec.host:
            assert self.agent is not None
            return self.agent, None, None, None
        host, group = self._picker.pick(spec.host, self.host.host_groups())
        try:
            agent = await self.hosts.get(host, spec.user)
            # A round trip first, where a failure surely means "not started": a host
            # that went silent (a partition) is found out here, in `start_timeout`.
            await agent.ping(timeout=self.hosts.settings.start_timeout)
        except Exception as exc:  # AgentConnectionError (with ssh's own words), a bad host name
            via = f" (host group {group!r})" if group else ""
            await self.host.transition(
                run, State.ERROR, f"cannot reach host {_host_label(host, spec.user)}{via}: {exc}",
                expect={State.STARTING})
            return None
        return agent, host, spec.user, group

    async def _started_anyway(
        self, run: Run, agent: AgentClient, exc: Exception, where: str
    ) -> ProcStatus | None:
        """The process, if a start lost with its connection did reach the agent; else
        None, once the run is an error that says whether it may have started."""
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
        await self.host.transition(run, State.ERROR, message, expect={State.STARTING})
        return None

    async def _reattach_process(self, run: Run) -> bool:
        try:
            status = await (await self._agent_for(run)).status(run.run_id)
        except Exception as exc:
            where = self._where(run)
            if where is not None and _transient(exc):
                lost = self.host.config.ha_host_lost
                await self.host.run_log(
                    run, f"cannot reach {_agent_label(where)} to reattach ({exc}); trying "
                    f"again every {RECONCILE_SECONDS:g}s, for up to {lost:g}s (ha.host_lost)")
                self._timer(run, "host-lost", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=lost),
                            lambda: self._host_lost(run, where))
                return True
            reason = exc if isinstance(exc, AgentError) else f"{type(exc).__name__}: {exc}"
            await self.host.transition(
                run, State.ERROR, f"the program's process was lost while the daemon was down ({reason})",
                expect=LIVE)
            return False
        if status.state == "running":
            await self.host.run_log(run, "reattached after a daemon restart")
            return True
        await self._finish(run, status)
        return False

    async def _host_lost(self, run: Run, where: HostKey) -> None:
        """`ha.host_lost` after the run's agent could first not be reached: one last try,
        then an error that says which host and why."""
        async def ask() -> ProcStatus:
            return await (await self._agent_for(run)).status(run.run_id)

        try:  # connecting included: a silent host answers nothing in `start_timeout`
            status = await asyncio.wait_for(ask(), self.hosts.settings.start_timeout)
        except Exception as exc:
            if _transient(exc) or isinstance(exc, TimeoutError):
                lost = self.host.config.ha_host_lost
                message = (f"cannot reach {_agent_label(where)} for {lost:g}s (ha.host_lost): "
                           f"{exc or 'no answer'}; the program may still be running there, "
                           "unwatched, and its output is not stored")
            else:
                message = f"the program's process was lost while the daemon was down ({exc})"
            await self.host.transition(run, State.ERROR, message, expect=LIVE)
            return
        await self._reached(run, status)

    async def _reached(self, run: Run, status: ProcStatus) -> None:
        """The run's agent answered (reconcile, or the last try at `host_lost`): no
        longer waiting for its host; finished if its process has ended."""
        timer = self._timers.get(run.run_id, {}).pop("host-lost", None)
        if timer is not None:
            timer.cancel()
            await self.host.run_log(run, "reached its agent again: reattached")
        if status.state != "running":
            await self._finish(run, status)

    async def _adopt_process(self, run: Run, spec: ProcessSpec) -> bool | None:
        """Asks each agent where `spec` could run (its host, or every host of its group)
        whether it started the run's process; takes the first that did."""
        group = self.host.host_groups().get(spec.host) if spec.host else None
        hosts: list[str | None] = list(group["hosts"]) if group else [spec.host]
        unknown = False
        for host in hosts:
            try:
                agent = (await self._home_agent(run) if host is None
                         else await self.hosts.get(host, spec.user))
                status = await agent.status(run.run_id)
            except AgentError as exc:
                unknown = unknown or exc.code != "not_found"
                continue
            except Exception:  # a bad host name, a pool closing: nobody could answer
                unknown = True
                continue
            await self._adopt(run, status, host, spec.user, spec.host if group else None)
            return True
        return None if unknown else False

    async def _adopt(self, run: Run, status: ProcStatus, host: str | None, user: str | None,
                     group: str | None) -> None:
        """The process an agent started for a run left `starting`: the run becomes
        running (as of the agent's start time), then finishes if the process has."""
        where = f" on {_host_label(host, user)}" if host else ""
        if status.state == "error":  # the agent's own record says the spawn failed
            await self.host.transition(run, State.ERROR, f"could not start the program{where}: "
                                       f"{status.message}", expect={State.STARTING})
            return
        info = ProcInfo(pid=status.pid or 0, outputs=dict(status.outputs), host=host,
                        user=user if host else None, host_group=group)
        self._spawned[run.run_id] = info
        try:
            if not await self.host.transition(
                    run, State.RUNNING, f"pid {status.pid}{where}, started before the daemon "
                    "stopped: reattached", expect={State.STARTING}, meta=run.meta.but(proc=info),
                    outputs=[{"output_id": oid, "length": 0} for oid in status.outputs],
                    at=_agent_time(status.start_time)):
                return
        finally:
            self._spawned.pop(run.run_id, None)
        ended = self._early_exits.pop(run.run_id, None) or (status if status.finished else None)
        if ended is not None:
            self.host.spawn(self._finish(run, ended), "finish")

    def _where(self, run: Run) -> HostKey | None:
        """Which agent the run's process is under, as the host pool knows it; None: this
        daemon's own."""
        proc = run.meta.proc or self._spawned.get(run.run_id)  # or while `running` is written
        if proc is not None and proc.remote:
            return proc.host, proc.user, None
        return self._home(run)

    def _home(self, run: Run) -> HostKey | None:
        """The local agent of the daemon that started the run, if not this daemon's: on
        this host (host None), or on the host that daemon ran on, over ssh."""
        origin, own = run.meta.origin, self.origin
        assert own is not None
        if origin is None or origin == own:  # None: from before origins were recorded
            return None
        return (None if origin.machine == own.machine else origin.machine), None, origin.agent_dir

    async def _agent_at(self, where: HostKey | None) -> AgentClient:
        if where is None:
            assert self.agent is not None
            return self.agent
        host, user, state_dir = where
        return await self.hosts.get(host, user, state_dir=state_dir)

    async def _home_agent(self, run: Run) -> AgentClient:
        """The agent a local program of the run was (or would have been) started under."""
        return await self._agent_at(self._home(run))

    async def _agent_for(self, run: Run) -> AgentClient:
        """The agent the run's process is under: the local one, or its host's."""
        return await self._agent_at(self._where(run))

    async def _send(self, run: Run, signal: str) -> None:
        try:
            await (await self._agent_for(run)).signal(run.run_id, signal)
        except Exception as exc:
            await self.host.run_log(run, f"could not send {signal}: {exc}")

    # -- finishing ----------------------------------------------------------------------

    def _exited(self, proc: ProcStatus) -> None:
        """An exit an agent reported: the run finishes, or, still starting (its `running`
        not written yet), finishes with it."""
        run = self.host.runs.get(proc.proc_id)
        if run is None:
            return
        if run.state in LIVE or run.run_id in self._spawned:
            self.host.spawn(self._finish(run, proc), "finish")
        elif run.state == State.STARTING:
            self._early_exits[run.run_id] = proc

    async def _finish(self, run: Run, status: ProcStatus) -> None:
        """Stores the outputs and records the end; an exit is reported at least once
        (and reattach and reconcile ask too): this finishes once."""
        if run.run_id in self._finishing or (run.state not in LIVE
                                             and run.run_id not in self._spawned):
            return
        self._finishing.add(run.run_id)
        try:
            spool = self._spool(run)
            if await self.host.transitions(run, [await self._ending(run, spool, status)],
                                           expect=LIVE) and spool is not None:
                await self._clean(spool)
        finally:
            self._finishing.discard(run.run_id)

    async def _ending(self, run: Run, spool: Spool | None, status: ProcStatus) -> Step:
        """The final transition of a run whose process ended, its outputs stored: big
        ones now, small ones to go in with it."""
        outputs: list[dict[str, Any]] = []
        small: list[Any] = []
        if spool is not None:
            config = self.host.config
            outputs, small = await spool.store(self.host.store, config.output_max_bytes,
                                               config.database.parent, status.lengths)
        timed_out = self._timed_out.get(run.run_id) or run.meta.timed_out
        to, message = exit_outcome(run, status, timed_out)
        updates: dict[str, Any] = {"exit_code": status.exit_code,
                                   "signal": _signal_name(status.signal), "outputs": outputs}
        # A timeout fires only once `running` is committed, so run.meta is current
        # then; otherwise `running` may still be on its way with the process's meta.
        if timed_out:
            updates["meta"] = run.meta.but(timed_out=timed_out)
        return Step(to, message, updates, small,
                    self.outputs.final_growth(run.run_id, run.job_id, outputs),
                    _agent_time(status.end_time))

    @staticmethod
    async def _clean(spool: Spool) -> None:
        try:
            await spool.clean()
        except Exception:
            log.warning("could not clean the agent's files of %s", spool.run_id, exc_info=True)

    # -- live output --------------------------------------------------------------------

    def _spool(self, run: Run) -> Spool | None:
        """Where the outputs of the run's process are, if it has one."""
        spool = self._spools.get(run.run_id)
        if spool is None:
            proc = run.meta.proc or self._spawned.get(run.run_id)
            if proc is None:
                return None
            where = self._where(run)
            if where is not None and where[0] is not None:  # read through that host's agent
                spool = RemoteSpool(run.run_id, list(proc.outputs), self.hosts, where[0],
                                    where[1], state_dir=where[2])
            else:
                spool = LocalSpool(run.run_id, dict(proc.outputs),
                                   lambda: self._agent_at(where))
            self._spools[run.run_id] = spool
        return spool

    def _live_spool(self, run: Run) -> Spool | None:
        """The spool, while it is the place to read from (not once the run finishes)."""
        if run.state not in LIVE or run.run_id in self._finishing:
            return None
        return self._spool(run)

    def _watched_spools(self) -> list[Spool]:
        return [spool for run in self.host.runs.live()
                if (spool := self._live_spool(run)) is not None]

    def _live_job(self, run_id: str) -> str | None:
        run = self.host.runs.get(run_id)
        return None if run is None else run.job_id

    async def open_live_output(self, run: Run, output_id: str, start: int,
                               end: int | None) -> OutputStream | None:
        """Bytes [start, end) of a running program's output, streamed from its spool and
        capped at `output.max_bytes` (head and tail); None when the store is the place
        to read (the run is not running, or is finishing) or the spool cannot be read."""
        spool = self._live_spool(run)
        if spool is None:
            return None
        try:
            return await spool.open(output_id, start, end, self.host.config.output_max_bytes)
        except Exception as exc:  # unreachable, or already cleaned: the store answers
            log.debug("live output of %s: %s", run.run_id, exc)
            return None

    async def read_live_output(self, run: Run, output_id: str, start: int,
                               end: int | None) -> bytes | None:
        stream = await self.open_live_output(run, output_id, start, end)
        if stream is None:
            return None
        try:
            return await stream.read()
        except Exception as exc:
            log.debug("live output of %s: %s", run.run_id, exc)
            return None

    async def live_outputs(self, run: Run) -> list[dict[str, Any]] | None:
        spool = self._live_spool(run)
        if spool is None:
            return None
        outputs = []
        for output_id in spool.output_ids:
            length = await spool.length(output_id)
            if length is None:
                return None
            outputs.append({"output_id": output_id, "length": length,
                            "content_type": "application/octet-stream"})
        return outputs

    # -- a safety net -------------------------------------------------------------------

    async def _reconcile_loop(self) -> None:
        """A safety net for a lost exit notice, and how a remote run whose host was
        unreachable at reattach comes back: ask its agent about every running run."""
        while True:
            await asyncio.sleep(RECONCILE_SECONDS)
            by_host: dict[HostKey | None, list[Run]] = {}
            for run in self.host.runs.live():
                if run.meta.proc is not None:
                    by_host.setdefault(self._where(run), []).append(run)
            # Hosts in parallel: one unreachable host does not hold up the others.
            await asyncio.gather(*(self._reconcile(runs) for runs in by_host.values()))

    async def _reconcile(self, runs: list[Run]) -> None:
        """Runs of one host, one after the other; stops at the first sign it is unreachable."""
        for run in runs:
            try:
                status = await (await self._agent_for(run)).status(run.run_id)
                await self._reached(run, status)
            except Exception as exc:
                log.debug("reconciling %s: %s", run.run_id, exc)
                if self._where(run) is not None and _transient(exc):
                    return


async def _until_recorded(transition: Callable[[], Awaitable[bool]]) -> bool:
    """A transition written again while the disk is full (a run left `starting` would
    stay so until a restart), a few seconds apart; other refusals are raised."""
    delay = 0.5
    while True:
        try:
            return await transition()
        except DiskFull as exc:
            log.warning("%s; trying again in %gs", exc, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)


class _Control:
    """The `ProgramContext` of one run: what its bound program acts through."""

    def __init__(self, runner: Runner, run: Run) -> None:
        self._runner = runner
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    @property
    def live(self) -> bool:
        return self._run.state in LIVE

    def started(self) -> dt.datetime:
        return self._run.time_of(State.RUNNING) or dt.datetime.now(dt.UTC)

    async def running(self, message: str | None = None) -> bool:
        return await self._runner.host.transition(self._run, State.RUNNING, message,
                                                  expect={State.STARTING})

    async def finish(self, state: State, message: str | None = None) -> bool:
        return await self._runner.host.transition(self._run, state, message, expect=LIVE)

    async def log(self, message: str) -> None:
        await self._runner.host.run_log(self._run, message)

    def at(self, name: str, when: dt.datetime, action: Callable[[], Awaitable[None]]) -> None:
        self._runner._timer(self._run, name, when, action)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> Any:
        return self._runner.host.spawn(coro, name)

    async def start_process(self, spec: ProcessSpec) -> bool:
        return await self._runner._start_process(self._run, spec)

    async def reattach_process(self) -> bool:
        return await self._runner._reattach_process(self._run)

    async def adopt_process(self, spec: ProcessSpec) -> bool | None:
        return await self._runner._adopt_process(self._run, spec)

    async def send_signal(self, signal: str) -> None:
        await self._runner._send(self._run, signal)

    def timed_out(self, duration: float) -> None:
        self._runner._timed_out[self._run.run_id] = duration


def _signal_name(signal: str | int | None) -> str | None:
    if signal is None or signal == 0:
        return None
    if isinstance(signal, int):
        try:
            return _signal.Signals(signal).name
        except ValueError:
            return str(signal)
    return str(signal)


def _agent_time(value: str | None) -> dt.datetime | None:
    """A time the agent recorded (when a program ended), if it sent a readable one."""
    try:
        return parse_time(value) if value else None
    except ValueError:
        return None


def _host_label(host: str | None, user: str | None) -> str:
    return f"{user}@{host}" if user else str(host)


def _agent_label(where: HostKey) -> str:
    """How a run's log names an agent that is not the daemon's own."""
    host, user, state_dir = where
    if state_dir is None:
        return f"host {_host_label(host, user)}"
    if host is None:
        return f"the agent in {state_dir} (of the daemon that started the run, on this host)"
    return f"host {host} (where the daemon that started the run ran; its agent in {state_dir})"


def _transient(exc: Exception) -> bool:
    """A failure to reach an agent, as opposed to an answer from it."""
    return isinstance(exc, AgentConnectionError) or (isinstance(exc, AgentError) and exc.code == "timeout")

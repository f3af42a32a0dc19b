"""`shell` and `program`: a process under the agent, on this host or another.

The process outlives the daemon; the agent records its exit, and the runner finishes
the run from it (exit 0 → success, anything else → failure). Here: what to start, and
the program's own limits (its timeout, the stop signal and the grace period).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from ..errors import JobError
from ..lib.strict import Fields, as_str, as_str_list, type_name
from ..lib.timefmt import parse_duration
from ..model.states import State
from ..parse_context import ParseContext
from .base import (
    PROGRAMS,
    BoundProgram,
    ProcessSpec,
    Program,
    ProgramContext,
    bound_value,
    or_template,
    parse_signal,
)

OUTPUT_MODES = ("combined", "split")
DEFAULT_STOP = {"signal": "SIGTERM", "grace_period": 60.0}


@dataclass
class _ProcessProgram(Program):
    """Shared keys of `shell` and `program`: where and how a process runs.

    `timeout` and `stop` hold their values as written when they are templates.
    """

    host: str | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: dict[str, Any] | None = None  # {duration: seconds, signal}
    stop: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_STOP))
    outputs: str = "combined"

    @staticmethod
    def common(f: Fields) -> dict[str, Any]:
        env = f.get("env", {})
        if not isinstance(env, dict):
            raise JobError(f"env must be a mapping of names to values, not {type_name(env)}", f.loc_of("env"))
        outputs = f.get("outputs", "combined", as_str)
        if outputs not in OUTPUT_MODES:
            raise JobError(f"outputs must be 'combined' or 'split', not {outputs!r}", f.loc_of("outputs"))
        timeout = None
        if f.has("timeout"):
            timeout = _parse_timeout(f.get("timeout"), f)
        stop = dict(DEFAULT_STOP)
        if f.has("stop"):
            sf = Fields(f.get("stop"), "stop", f.diags, f.loc_of("stop"))
            stop = {
                "signal": sf.get("signal", "SIGTERM", or_template(parse_signal)),
                "grace_period": sf.get("grace_period", 60.0, or_template(parse_duration)),
            }
            sf.done()
        return {
            "host": f.get("host", None, as_str),
            "user": f.get("user", None, as_str),
            "env": {str(k): as_str(v) for k, v in env.items()},
            "cwd": f.get("cwd", None, as_str),
            "timeout": timeout,
            "stop": stop,
            "outputs": outputs,
        }

    def common_jso(self) -> dict[str, Any]:
        jso: dict[str, Any] = {}
        for key in ("host", "user", "cwd", "timeout"):
            if getattr(self, key) is not None:
                jso[key] = getattr(self, key)
        if self.env:
            jso["env"] = dict(self.env)
        jso["stop"] = dict(self.stop)
        jso["outputs"] = self.outputs
        return jso

    @staticmethod
    def argv_of(jso: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    @classmethod
    def bind(cls, jso: dict[str, Any]) -> BoundProcess:
        timeout = None
        if isinstance(jso.get("timeout"), dict):
            timeout = Timeout(bound_value(jso, "timeout.duration", parse_duration, None),
                              bound_value(jso, "timeout.signal", parse_signal, "SIGTERM"))
        elif jso.get("timeout") is not None:  # the short form, `timeout: 1h`
            timeout = Timeout(bound_value(jso, "timeout", parse_duration, None), "SIGTERM")
        if timeout is not None and timeout.duration is None:
            raise ValueError("program timeout: needs a duration")
        spec = ProcessSpec(
            argv=cls.argv_of(jso),
            env={str(k): str(v) for k, v in (jso.get("env") or {}).items()},
            cwd=jso.get("cwd") or None,
            outputs=jso.get("outputs") or "combined",
            host=jso.get("host") or None,
            user=jso.get("user") or None,
        )
        return BoundProcess(
            spec=spec, timeout=timeout,
            stop_signal=bound_value(jso, "stop.signal", parse_signal, "SIGTERM"),
            grace_period=bound_value(jso, "stop.grace_period", parse_duration, 60.0))


def _parse_timeout(value: Any, f: Fields) -> dict[str, Any]:
    if isinstance(value, dict):
        tf = Fields(value, "timeout", f.diags, f.loc_of("timeout"))
        timeout = {
            "duration": tf.require("duration", or_template(parse_duration)),
            "signal": tf.get("signal", "SIGTERM", or_template(parse_signal)),
        }
        tf.done()
        return timeout
    return {"duration": f.convert("timeout", value, or_template(parse_duration)), "signal": "SIGTERM"}


@PROGRAMS.register("shell")
@dataclass
class ShellProgram(_ProcessProgram):
    command: str = ""

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> ShellProgram:
        return cls(command=f.require("command", as_str), **cls.common(f))

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "command": self.command, **self.common_jso()}

    @staticmethod
    def argv_of(jso: dict[str, Any]) -> list[str]:
        return ["/bin/bash", "-c", str(jso["command"])]  # as Apsis does


@PROGRAMS.register("program")
@dataclass
class ArgvProgram(_ProcessProgram):
    argv: list[str] = field(default_factory=list)

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> ArgvProgram:
        argv = f.require("argv", as_str_list)
        if not argv:
            raise JobError("argv must not be empty", f.loc_of("argv"))
        return cls(argv=argv, **cls.common(f))

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "argv": list(self.argv), **self.common_jso()}

    @staticmethod
    def argv_of(jso: dict[str, Any]) -> list[str]:
        return [str(a) for a in jso["argv"]]


@dataclass(frozen=True, slots=True)
class Timeout:
    duration: float
    signal: str


@dataclass(frozen=True, slots=True)
class BoundProcess(BoundProgram):
    spec: ProcessSpec
    timeout: Timeout | None
    stop_signal: str
    grace_period: float

    async def start(self, ctx: ProgramContext) -> None:
        if await ctx.start_process(self.spec):
            self._arm_timeout(ctx)

    async def recover_start(self, ctx: ProgramContext) -> bool | None:
        found = await ctx.adopt_process(self.spec)
        if found and ctx.run.state == State.RUNNING:
            self._arm_timeout(ctx)
        return found

    async def reattach(self, ctx: ProgramContext) -> None:
        if await ctx.reattach_process():
            self._arm_timeout(ctx)
            if ctx.run.state == State.STOPPING:
                self._arm_kill(ctx)

    async def signal(self, ctx: ProgramContext, signal: str) -> None:
        await ctx.send_signal(signal)

    async def stop(self, ctx: ProgramContext) -> None:
        await ctx.send_signal(self.stop_signal)
        self._arm_kill(ctx)

    def _arm_timeout(self, ctx: ProgramContext) -> None:
        timeout = self.timeout
        if timeout is None:
            return

        async def fire() -> None:
            if ctx.run.state != State.RUNNING:
                return
            ctx.timed_out(timeout.duration)
            await ctx.log(f"timeout: sending {timeout.signal}")
            await ctx.send_signal(timeout.signal)
            self._arm_kill(ctx)

        ctx.at("timeout", ctx.started() + dt.timedelta(seconds=timeout.duration), fire)

    def _arm_kill(self, ctx: ProgramContext) -> None:
        grace = self.grace_period

        async def kill() -> None:
            if ctx.live:
                await ctx.log(f"still running {grace:g}s after the stop signal: SIGKILL")
                await ctx.send_signal("SIGKILL")

        ctx.at("kill", dt.datetime.now(dt.UTC) + dt.timedelta(seconds=grace), kill)

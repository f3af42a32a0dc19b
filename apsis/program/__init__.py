"""Programs: what a run executes.  Parsing and binding live here; execution lives in the engine."""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass, field
from typing import Any

from ..errors import JobError, Location
from ..lib.registry import Registry
from ..lib.strict import Fields, as_str, as_str_list, type_name
from ..lib.timefmt import parse_duration
from ..parse_context import ParseContext

OUTPUT_MODES = ("combined", "split")


def parse_signal(value: Any) -> str:
    """A signal name (`SIGTERM`, `TERM`, `15`) normalised to `SIGTERM`."""
    if isinstance(value, bool):
        raise ValueError(f"not a signal: {value!r}")
    if isinstance(value, int):
        try:
            return _signal.Signals(value).name
        except ValueError:
            raise ValueError(f"no signal number {value}") from None
    text = str(value).strip().upper()
    if text.isdigit():
        return parse_signal(int(text))
    name = text if text.startswith("SIG") else "SIG" + text
    if name not in _signal.Signals.__members__:
        raise ValueError(f"unknown signal {value!r} (use a name like SIGTERM or SIGINT)")
    return name


class Program:
    """Base of every program type: it knows its JSON form."""

    TYPE = "?"

    def to_jso(self) -> dict[str, Any]:
        raise NotImplementedError

    async def execute(self, run: dict[str, Any]) -> tuple[str, str | None]:
        """Extension programs (`type: package.module.Class`) run here, in the daemon's event
        loop, and return (final state, message).  Built-in types run under the agent."""
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    @property
    def templates(self) -> list[str]:
        """Every template string in the program (for checks)."""
        return list(_strings(self.to_jso()))


def _strings(value: Any):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


PROGRAMS: Registry[Program] = Registry("program")


@PROGRAMS.register("no-op")
@dataclass
class NoOpProgram(Program):
    duration: float = 0.0
    success: bool | None = True

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> NoOpProgram:
        success = f.get("success", True)
        if success is not None and not isinstance(success, bool):
            raise JobError("success must be true, false or null", f.loc_of("success"))
        return cls(duration=f.get("duration", 0.0, parse_duration), success=success)

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "duration": self.duration, "success": self.success}


@dataclass
class _ProcessProgram(Program):
    """Shared keys of `shell` and `program`: where and how a process runs."""

    host: str | None = None
    user: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    timeout: dict[str, Any] | None = None  # {duration: seconds, signal}
    stop: dict[str, Any] = field(default_factory=lambda: {"signal": "SIGTERM", "grace_period": 60.0})
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
        stop = {"signal": "SIGTERM", "grace_period": 60.0}
        if f.has("stop"):
            sf = Fields(f.get("stop"), "stop", f.diags, f.loc_of("stop"))
            stop = {
                "signal": sf.get("signal", "SIGTERM", parse_signal),
                "grace_period": sf.get("grace_period", 60.0, parse_duration),
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


def _parse_timeout(value: Any, f: Fields) -> dict[str, Any]:
    if isinstance(value, dict):
        tf = Fields(value, "timeout", f.diags, f.loc_of("timeout"))
        timeout = {
            "duration": tf.require("duration", parse_duration),
            "signal": tf.get("signal", "SIGTERM", parse_signal),
        }
        tf.done()
        return timeout
    return {"duration": f.convert("timeout", value, parse_duration), "signal": "SIGTERM"}


@PROGRAMS.register("shell")
@dataclass
class ShellProgram(_ProcessProgram):
    command: str = ""

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> ShellProgram:
        return cls(command=f.require("command", as_str), **cls.common(f))

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "command": self.command, **self.common_jso()}


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


def parse_program(value: Any, loc: Location | None, ctx: ParseContext) -> Program:
    """A program from its job-file form: a string, a list, or a mapping with `type`."""
    if isinstance(value, str):
        return ShellProgram(command=value)
    if isinstance(value, list):
        argv = as_str_list(value)
        if not argv:
            raise JobError("program argv must not be empty", loc)
        return ArgvProgram(argv=argv)
    return PROGRAMS.parse(value, loc, ctx)



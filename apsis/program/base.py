"""What every program type shares: its parsed form, its bound form, and the context
the engine gives a bound program to act through.

A job's program is parsed once, when the job loads (`Program`); a field may still be a
template then. Each run renders it (`run.program`, a dict) and binds that
(`bind_program`), which checks the rendered values and gives a `BoundProgram`: the
object whose `start`, `reattach`, `signal` and `stop` the runner calls. The runner
never asks what type a program is.
"""

from __future__ import annotations

import datetime as dt
import signal as _signal
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from ..errors import Diagnostics
from ..lib.registry import Registry
from ..lib.strict import Fields
from ..model.run import Run
from ..model.states import State
from ..parse_context import ParseContext


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


def is_template(value: Any) -> bool:
    """A string that is rendered per run (so it can only be checked then)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def or_template(conv: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A load-time converter that keeps a template as written, for `bind_program`."""

    def convert(value: Any) -> Any:
        return value if is_template(value) else conv(value)

    return convert


def bound_value(jso: dict[str, Any], path: str, conv: Callable[[Any], Any], default: Any) -> Any:
    """A rendered field (`timeout.duration`) converted; a ValueError names field and value."""
    node: Any = jso
    *parents, key = path.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or node.get(key) is None:
        return default
    value = node[key]
    try:
        return conv(value)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"program {path}: {exc}") from None


class NotSignalable(Exception):
    """The program has no process to send a signal to."""


@dataclass(frozen=True, slots=True)
class ProcessSpec:
    """A process to start under an agent (locally, or on `host` over ssh)."""

    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    outputs: str = "combined"  # combined | split
    host: str | None = None  # a host or a host group; None: this machine
    user: str | None = None


class ProgramContext(Protocol):
    """What a bound program acts through: the runner, for one run.

    State changes go through here (and so through the engine's one transition path);
    timers are named per run, and a new one of the same name replaces the old.
    """

    @property
    def run(self) -> Run: ...

    @property
    def live(self) -> bool:
        """Still running or stopping."""
        ...

    def started(self) -> dt.datetime:
        """When the run became running (now, if it has not yet)."""
        ...

    async def running(self, message: str | None = None) -> bool:
        """starting → running; False if the run is no longer starting."""
        ...

    async def finish(self, state: State, message: str | None = None) -> bool:
        """running or stopping → a finished state; False if it was finished already."""
        ...

    async def log(self, message: str) -> None: ...

    def at(self, name: str, when: dt.datetime, action: Callable[[], Awaitable[None]]) -> None: ...

    def spawn(self, coro: Coroutine[Any, Any, None], name: str) -> Any: ...

    async def start_process(self, spec: ProcessSpec) -> bool:
        """Starts the process and makes the run running; False (the run is then an
        error that says why) if it could not start."""
        ...

    async def reattach_process(self) -> bool:
        """Finds the run's process again after a restart; True while it still runs
        (or its host cannot be asked yet), False once the run is finished."""
        ...

    async def adopt_process(self, spec: ProcessSpec) -> bool | None:
        """For a run left `starting` by a previous daemon, asks the agents where `spec`
        could run whether they started it: True once found (the run is then running,
        or finished), False if every one answered no, None if one could not be asked."""
        ...

    async def send_signal(self, signal: str) -> None:
        """To the process group; a failure is written to the run's log."""
        ...

    def timed_out(self, duration: float) -> None:
        """Records that the program's timeout fired: its end is then a failure that says so."""
        ...


class BoundProgram:
    """A program bound to one run: what the runner calls."""

    async def start(self, ctx: ProgramContext) -> None:
        """From `starting`: make the run running (or an error), and arrange its end."""
        raise NotImplementedError

    async def reattach(self, ctx: ProgramContext) -> None:
        """After a daemon restart, for a run that was running or stopping."""
        raise NotImplementedError

    async def recover_start(self, ctx: ProgramContext) -> bool | None:
        """After a daemon restart, for a run left `starting`: True once the program has
        taken the run on (it had started), False if it surely never started (the engine
        then decides whether it starts now), None if that cannot be known (the run
        becomes an error that says so, never run twice)."""
        return None

    async def signal(self, ctx: ProgramContext, signal: str) -> None:
        raise NotSignalable(f"a {type(self).__name__} has no process to signal")

    async def stop(self, ctx: ProgramContext) -> None:
        """The run is now stopping (`run.meta` says why): end it."""
        raise NotImplementedError


class Program:
    """Base of every program type: it knows its JSON form and how to bind it."""

    TYPE: ClassVar[str] = "?"

    def to_jso(self) -> dict[str, Any]:
        raise NotImplementedError

    async def execute(self, run: dict[str, Any]) -> tuple[str, str | None]:
        """Extension programs (`type: package.module.Class`) run here, in the daemon's event
        loop, and return (final state, message).  Built-in types run under the agent."""
        raise NotImplementedError(f"{type(self).__name__} does not implement execute()")

    @classmethod
    def bind(cls, jso: dict[str, Any]) -> BoundProgram:
        """The rendered program of a run, checked. An extension class is parsed again
        from it and runs in the loop (`execute`)."""
        diags = Diagnostics()
        fields = Fields({k: v for k, v in jso.items() if k != "type"}, "program", diags)
        program = cls.from_jso(fields, ParseContext(diags=diags))  # type: ignore[attr-defined]
        return InLoopProgram(program, str(jso.get("type")))


PROGRAMS: Registry[Program] = Registry("program")


class InLoopProgram(BoundProgram):
    """An extension program: its `execute` runs as a task in the daemon's event loop.

    Nothing of it outlives the daemon, so it cannot be reattached; stopping it cancels
    the task.
    """

    def __init__(self, program: Program, type_name: str) -> None:
        self.program = program
        self.type_name = type_name
        self._task: Any = None

    async def start(self, ctx: ProgramContext) -> None:
        if not await ctx.running():
            return

        async def execute() -> None:
            try:
                state, message = await self.program.execute(ctx.run.to_jso())
                to = State.parse(state)
            except Exception as exc:
                to, message = State.ERROR, f"{self.type_name} failed: {exc}"
            await ctx.finish(to if to.finished else State.ERROR, message)

        self._task = ctx.spawn(execute(), "extension-program")

    async def recover_start(self, ctx: ProgramContext) -> bool | None:
        return False  # it runs only once `running` is committed

    async def reattach(self, ctx: ProgramContext) -> None:
        await ctx.finish(
            State.ERROR, f"the daemon restarted while the {self.type_name} program ran; it runs "
            "inside the daemon, so it cannot be reattached (rerun it if that is safe)")

    async def signal(self, ctx: ProgramContext, signal: str) -> None:
        raise NotSignalable(f"a {self.type_name} program runs inside the daemon; "
                            "it has no process to signal")

    async def stop(self, ctx: ProgramContext) -> None:
        if self._task is not None:
            self._task.cancel()
        await ctx.finish(State.SUCCESS, ctx.run.meta.stop_reason)

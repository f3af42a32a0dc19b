"""`no-op`: runs for `duration`, then ends as `success` says. Nothing outlives the
daemon but its timer, which reattach arms again from the run's start time."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from ..errors import JobError
from ..lib.strict import Fields
from ..lib.timefmt import parse_duration
from ..model.states import State
from ..parse_context import ParseContext
from .base import (
    PROGRAMS,
    BoundProgram,
    NotSignalable,
    Program,
    ProgramContext,
    bound_value,
    or_template,
)


@PROGRAMS.register("no-op")
@dataclass
class NoOpProgram(Program):
    duration: float | str = 0.0  # a string is a template, bound per run
    success: bool | None = True

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> NoOpProgram:
        success = f.get("success", True)
        if success is not None and not isinstance(success, bool):
            raise JobError("success must be true, false or null", f.loc_of("success"))
        return cls(duration=f.get("duration", 0.0, or_template(parse_duration)), success=success)

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "duration": self.duration, "success": self.success}

    @classmethod
    def bind(cls, jso: dict[str, Any]) -> BoundNoOp:
        return BoundNoOp(duration=bound_value(jso, "duration", parse_duration, 0.0),
                         success=jso.get("success", True))


@dataclass(frozen=True, slots=True)
class BoundNoOp(BoundProgram):
    duration: float
    success: Any  # true, false or null; anything else is an error that says so

    async def start(self, ctx: ProgramContext) -> None:
        if await ctx.running():
            self._arm(ctx)

    async def reattach(self, ctx: ProgramContext) -> None:
        self._arm(ctx)

    async def recover_start(self, ctx: ProgramContext) -> bool | None:
        return False  # its timer is armed only once `running` is committed

    def _arm(self, ctx: ProgramContext) -> None:
        ctx.at("no-op", ctx.started() + dt.timedelta(seconds=self.duration), lambda: self._end(ctx))

    async def _end(self, ctx: ProgramContext) -> None:
        if self.success is True:
            await ctx.finish(State.SUCCESS)
        else:
            to = State.FAILURE if self.success is False else State.ERROR
            await ctx.finish(to, f"no-op program: success is {json.dumps(self.success)}")

    async def signal(self, ctx: ProgramContext, signal: str) -> None:
        raise NotSignalable("a no-op program has no process to signal")

    async def stop(self, ctx: ProgramContext) -> None:
        # It ends at once when asked: a success, as a process ending on its stop signal.
        await ctx.finish(State.SUCCESS, ctx.run.meta.stop_reason)

"""Conditions: what a scheduled run waits for before it starts.

Parsing lives here; the waiter in the engine evaluates them.  Template strings
(args, counts) stay unrendered until a run binds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import JobError, Location
from ..lib.registry import Registry
from ..lib.strict import Fields, as_args, as_bool, as_str
from ..parse_context import ParseContext
from ..model.states import FINISHED, State


class Condition:
    TYPE = "?"

    def to_jso(self) -> dict[str, Any]:
        raise NotImplementedError


CONDITIONS: Registry[Condition] = Registry("condition")


def parse_states(value: Any) -> list[str]:
    states = value if isinstance(value, list) else [value]
    return [State.parse(str(s)).value for s in states]


@CONDITIONS.register("dependency")
@dataclass
class DependencyCondition(Condition):
    job_id: str
    args: dict[str, str] = field(default_factory=dict)
    states: list[str] = field(default_factory=lambda: ["success"])
    exist: bool = False

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> DependencyCondition:
        return cls(
            job_id=f.require("job_id", as_str),
            args=f.get("args", {}, as_args),
            states=f.get("states", ["success"], parse_states),
            exist=f.get("exist", False, as_bool),
        )

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "job_id": self.job_id, "args": dict(self.args),
                "states": list(self.states), "exist": self.exist}


@CONDITIONS.register("max_running")
@dataclass
class MaxRunningCondition(Condition):
    count: str = "1"  # templated
    job_id: str | None = None
    args: dict[str, str] | None = None

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> MaxRunningCondition:
        return cls(
            count=f.get("count", "1", as_str),
            job_id=f.get("job_id", None, as_str),
            args=f.get("args", None, as_args),
        )

    def to_jso(self) -> dict[str, Any]:
        # A literal count is a number in the JSON; only a template stays a string.
        count: int | str = int(self.count) if self.count.strip().isdigit() else self.count
        jso: dict[str, Any] = {"type": self.TYPE, "count": count}
        if self.job_id is not None:
            jso["job_id"] = self.job_id
        if self.args is not None:
            jso["args"] = dict(self.args)
        return jso


@CONDITIONS.register("skip_duplicate")
@dataclass
class SkipDuplicateCondition(Condition):
    check_states: list[str] = field(default_factory=lambda: ["waiting", "starting", "running"])
    target_state: str = "skipped"

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> SkipDuplicateCondition:
        target = f.get("target_state", "skipped", lambda v: State.parse(str(v)).value)
        if State(target) not in FINISHED:
            raise JobError(f"target_state must be a finished state, not {target!r}",
                           f.loc_of("target_state"))
        return cls(
            check_states=f.get("check_states", ["waiting", "starting", "running"], parse_states),
            target_state=target,
        )

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "check_states": list(self.check_states),
                "target_state": self.target_state}


@CONDITIONS.register("const")
@dataclass
class ConstCondition(Condition):
    value: Any = True

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> ConstCondition:
        return cls(value=f.get("value", True))

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "value": self.value}


def parse_condition(value: Any, loc: Location | None, ctx: ParseContext) -> Condition:
    return CONDITIONS.parse(value, loc, ctx)


def parse_conditions(value: Any, loc: Location | None, ctx: ParseContext) -> list[Condition]:
    """One condition or a list; each broken one is reported and the rest still parsed."""
    return CONDITIONS.parse_list(value, loc, ctx)

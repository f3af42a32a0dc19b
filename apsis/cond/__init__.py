"""Conditions: what a scheduled run waits for before it starts.

A condition is parsed from the job file (template strings such as args and counts
stay unrendered), rendered for each run, then *bound* to the run: the bound object
knows which instances it watches and checks itself against a view of the runs.
The engine's waiter only asks; it never looks at a condition's type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..errors import Diagnostics, JobError, Location
from ..lib.registry import Registry
from ..lib.strict import Fields, as_args, as_bool, as_str
from ..model.run import InstanceKey, instance_key
from ..model.states import FINISHED, State
from ..parse_context import ParseContext


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a condition says of a waiting run: met; not yet, and why; or never, and how
    the run ends then (`fail` is the state it goes to)."""

    met: bool
    reason: str | None = None
    fail: State | None = None


MET = Verdict(True)


def not_yet(reason: str) -> Verdict:
    return Verdict(False, reason)


def never(reason: str, state: State = State.ERROR) -> Verdict:
    return Verdict(False, reason, state)


class RunsView(Protocol):
    """What a condition may look at: the daemon's runs, read-only."""

    def unfinished(self, job_id: str, args: dict[str, str]) -> list[tuple[str, State]]:
        """(run id, state) of an instance's unfinished runs; a run whose transition is
        being committed counts in the state it is becoming."""

    async def finished_in(self, job_id: str, args: dict[str, str], states: list[str]) -> bool:
        """Whether a finished run of the instance is in one of `states` (from the store)."""


@dataclass(frozen=True, slots=True)
class BindContext:
    """What binding a condition to a run needs: the run, and the params of other jobs."""

    run_id: str
    job_id: str
    args: dict[str, str]
    params_of: Callable[[str], list[str] | None]


class BoundCondition:
    """A condition of one run. `check` is synchronous so that the waiter can check every
    condition and start the run without yielding; a condition that needs the store
    answers in `look` first (awaited before the final checks)."""

    def watches(self) -> list[InstanceKey]:
        """Instances whose runs' transitions may change this condition's verdict."""
        return []

    async def look(self, view: RunsView) -> Verdict:
        return self.check(view)

    def check(self, view: RunsView) -> Verdict:
        raise NotImplementedError


class Condition:
    TYPE = "?"

    def to_jso(self) -> dict[str, Any]:
        raise NotImplementedError

    def bind(self, ctx: BindContext) -> BoundCondition:
        """The condition of one run (its templates already rendered). Raises ValueError
        naming what is wrong with a rendered value."""
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

    def bind(self, ctx: BindContext) -> BoundCondition:
        # The dependency's args: those given, plus the run's args of the same names.
        args = dict(self.args)
        for param in ctx.params_of(self.job_id) or ():
            if param not in args and param in ctx.args:
                args[param] = ctx.args[param]
        return _BoundDependency(self.job_id, args, frozenset(State(s) for s in self.states),
                                self.exist)


@dataclass(slots=True)
class _BoundDependency(BoundCondition):
    job_id: str
    args: dict[str, str]
    wanted: frozenset[State]
    exist: bool
    found_finished: bool = False  # a finished run in a wanted state was found in the store

    def watches(self) -> list[InstanceKey]:
        return [instance_key(self.job_id, self.args)]

    async def look(self, view: RunsView) -> Verdict:
        verdict = self.check(view)
        if verdict.met or self.found_finished:
            return verdict
        finished = sorted(s.value for s in self.wanted if s.finished)
        if finished and await view.finished_in(self.job_id, self.args, finished):
            self.found_finished = True
            return MET
        return verdict

    def check(self, view: RunsView) -> Verdict:
        if self.found_finished:
            return MET
        live = view.unfinished(self.job_id, self.args)
        if any(state in self.wanted for _, state in live):
            return MET
        wanted = "/".join(sorted(s.value for s in self.wanted))
        if self.exist and not live:
            return never(f"dependency {self.job_id} {self.args} has no run that exists or can "
                         f"still become {wanted}")
        return not_yet(f"waiting for {self.job_id} {self.args} to be {wanted}")


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

    def bind(self, ctx: BindContext) -> BoundCondition:
        try:
            limit = int(str(self.count).strip())
        except ValueError:
            raise ValueError(f"max_running count is not a number: {self.count!r}") from None
        # It counts its own job_id/args if given, else the run's own instance.
        counted = (self.job_id or ctx.job_id, dict(self.args) if self.args is not None else ctx.args)
        return _BoundMaxRunning(limit, *counted)


_ACTIVE = frozenset({State.STARTING, State.RUNNING})


@dataclass(frozen=True, slots=True)
class _BoundMaxRunning(BoundCondition):
    limit: int
    job_id: str
    args: dict[str, str]

    def watches(self) -> list[InstanceKey]:
        return [instance_key(self.job_id, self.args)]

    def check(self, view: RunsView) -> Verdict:
        active = [run_id for run_id, state in view.unfinished(self.job_id, self.args)
                  if state in _ACTIVE]
        if len(active) >= self.limit:
            return not_yet(f"max_running: {len(active)} of {self.limit} running "
                           f"({', '.join(sorted(active)[:3])})")
        return MET


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

    def bind(self, ctx: BindContext) -> BoundCondition:
        return _BoundSkipDuplicate(ctx.run_id, ctx.job_id, ctx.args,
                                   frozenset(State(s) for s in self.check_states),
                                   State(self.target_state))


@dataclass(frozen=True, slots=True)
class _BoundSkipDuplicate(BoundCondition):
    run_id: str
    job_id: str
    args: dict[str, str]
    check_states: frozenset[State]
    target: State

    def watches(self) -> list[InstanceKey]:
        return [instance_key(self.job_id, self.args)]

    def check(self, view: RunsView) -> Verdict:
        for run_id, state in view.unfinished(self.job_id, self.args):
            if run_id != self.run_id and state in self.check_states:
                return never(f"duplicate of {run_id} ({state.value})", self.target)
        return MET


@CONDITIONS.register("const")
@dataclass
class ConstCondition(Condition):
    value: Any = True

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> ConstCondition:
        return cls(value=f.get("value", True))

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "value": self.value}

    def bind(self, ctx: BindContext) -> BoundCondition:
        return _BoundConst(bool(self.value))


@dataclass(frozen=True, slots=True)
class _BoundConst(BoundCondition):
    value: bool

    def check(self, view: RunsView) -> Verdict:
        return MET if self.value else not_yet("a const condition is false")


def parse_condition(value: Any, loc: Location | None, ctx: ParseContext) -> Condition:
    return CONDITIONS.parse(value, loc, ctx)


def parse_conditions(value: Any, loc: Location | None, ctx: ParseContext) -> list[Condition]:
    """One condition or a list; each broken one is reported and the rest still parsed."""
    return CONDITIONS.parse_list(value, loc, ctx)


def bind_condition(rendered: dict[str, Any], ctx: BindContext) -> BoundCondition:
    """A run's condition from its rendered JSON (as stored with the run)."""
    diags = Diagnostics()
    try:
        cond = CONDITIONS.parse(rendered, None, ParseContext(diags=diags))
    except JobError as exc:
        problems = "; ".join(d.message for d in diags.errors) or exc.message
        raise ValueError(f"condition {rendered.get('type')!r}: {problems}") from None
    return cond.bind(ctx)

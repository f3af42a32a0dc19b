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
from ..lib.strict import Fields, as_args, as_str
from ..model.run import InstanceKey, instance_key
from ..model.states import FINISHED, TRANSITIONS, State
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

    async def finished_in(self, job_id: str, args: dict[str, str], states: list[str]) -> str | None:
        """The id of a finished run of the instance in one of `states` (from the store), if any."""


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


def _reachable(state: State) -> frozenset[State]:
    """The states a run in `state` can still reach, itself included (`mark` aside)."""
    seen, todo = {state}, [state]
    while todo:
        here = todo.pop()
        if here.finished:
            continue
        for nxt in TRANSITIONS[here] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return frozenset(seen)


def parse_exist(value: Any) -> bool | list[str]:
    """`exist`: true or false, or a state or list of states (as in Apsis)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    return parse_states(value)


@CONDITIONS.register("dependency")
@dataclass
class DependencyCondition(Condition):
    job_id: str
    args: dict[str, str] = field(default_factory=dict)
    states: list[str] = field(default_factory=lambda: ["success"])
    # false; true (a run that can still become one of `states`); or the states a run must be in
    exist: bool | list[str] = False

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> DependencyCondition:
        return cls(
            job_id=f.require("job_id", as_str),
            args=f.get("args", {}, as_args),
            states=f.get("states", ["success"], parse_states),
            exist=f.get("exist", False, parse_exist),
        )

    def to_jso(self) -> dict[str, Any]:
        exist = self.exist if isinstance(self.exist, bool) else list(self.exist)
        return {"type": self.TYPE, "job_id": self.job_id, "args": dict(self.args),
                "states": list(self.states), "exist": exist}

    def exist_states(self) -> frozenset[State] | None:
        """The states one run of the dependency must be in while this one waits; None: any."""
        if self.exist is False:
            return None
        if self.exist is True:
            wanted = {State(s) for s in self.states}
            return frozenset(s for s in State if _reachable(s) & wanted)
        return frozenset(State(s) for s in self.exist)

    def bind(self, ctx: BindContext) -> BoundCondition:
        # The dependency's args: those given, plus the run's args of the same names.
        args = dict(self.args)
        for param in ctx.params_of(self.job_id) or ():
            if param not in args and param in ctx.args:
                args[param] = ctx.args[param]
        return _BoundDependency(self.job_id, args, frozenset(State(s) for s in self.states),
                                self.exist_states())


@dataclass(slots=True)
class _BoundDependency(BoundCondition):
    """Met once a run of the instance is in a wanted state (live, or finished in the store).

    With `exist`, a run of the instance must be in one of those states all along: `look`
    asks the store for finished ones, and only a `look` that finds none anywhere may end
    the wait (`check` alone, with no store, never does: a run finishing between the two
    is in neither place for a moment).
    """

    job_id: str
    args: dict[str, str]
    wanted: frozenset[State]
    exist: frozenset[State] | None
    found: str | None = None  # a finished run in a wanted state (kept: it was met)
    missing: bool = False  # the last look found no run in an exist state

    def watches(self) -> list[InstanceKey]:
        return [instance_key(self.job_id, self.args)]

    async def look(self, view: RunsView) -> Verdict:
        live = view.unfinished(self.job_id, self.args)
        if self.found is None and not any(state in self.wanted for _, state in live):
            finished = sorted(s.value for s in self.wanted if s.finished)
            if finished:
                self.found = await view.finished_in(self.job_id, self.args, finished)
        if self.exist is not None and self.found is None:
            in_exist = any(state in self.exist for _, state in live)
            if not in_exist:
                finished = sorted(s.value for s in self.exist if s.finished)
                in_exist = bool(finished) and bool(
                    await view.finished_in(self.job_id, self.args, finished))
            self.missing = not in_exist
        return self.check(view)

    def check(self, view: RunsView) -> Verdict:
        if self.found is not None:
            return MET
        live = view.unfinished(self.job_id, self.args)
        if any(state in self.wanted for _, state in live):
            return MET
        what = " ".join([self.job_id, *(f"{k}={v}" for k, v in sorted(self.args.items()))])
        if self.exist is not None and self.missing and not any(
                state in self.exist for _, state in live):
            exist = "/".join(sorted(s.value for s in self.exist))
            return never(f"dependency {what}: no run of it is {exist}")
        wanted = "/".join(sorted(s.value for s in self.wanted))
        now = (", ".join(f"{run_id} is {state.value}" for run_id, state in sorted(live)[:3])
               if live else "no run of it is scheduled or running")
        return not_yet(f"waiting for {what} to be {wanted}: {now}")


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


@dataclass(slots=True)
class _BoundSkipDuplicate(BoundCondition):
    """Another run of the instance in a check state ends this one in `target`. Finished
    check states (`[failure, error]`: not again after a failure) are looked up in the
    store; a finished run stays finished, so one found is kept."""

    run_id: str
    job_id: str
    args: dict[str, str]
    check_states: frozenset[State]
    target: State
    finished: tuple[str, str] | None = None  # (run id, state) of a finished duplicate

    def watches(self) -> list[InstanceKey]:
        return [instance_key(self.job_id, self.args)]

    async def look(self, view: RunsView) -> Verdict:
        states = sorted(s.value for s in self.check_states if s.finished)
        if self.finished is None and states:
            for state in states:  # one at a time, to name the state in the message
                run_id = await view.finished_in(self.job_id, self.args, [state])
                if run_id is not None and run_id != self.run_id:
                    self.finished = (run_id, state)
                    break
        return self.check(view)

    def check(self, view: RunsView) -> Verdict:
        for run_id, state in view.unfinished(self.job_id, self.args):
            if run_id != self.run_id and state in self.check_states:
                return never(f"duplicate of {run_id} ({state.value})", self.target)
        if self.finished is not None:
            run_id, finished_state = self.finished
            return never(f"duplicate of {run_id} ({finished_state})", self.target)
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

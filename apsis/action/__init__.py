"""Actions: what happens when a run reaches a state.  The engine carries them out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import JobError, Location
from ..lib.registry import Registry
from ..lib.strict import Fields, as_args, as_int, as_str, as_str_list, items_with_locs
from ..lib.timefmt import parse_duration
from ..parse_context import ParseContext
from ..model.states import FINISHED
from ..cond import parse_states

DEFAULT_IF_STATES = sorted(s.value for s in FINISHED)


class Action:
    TYPE = "?"
    if_states: list[str]

    def to_jso(self) -> dict[str, Any]:
        raise NotImplementedError

    def if_jso(self) -> dict[str, Any]:
        return {"if": {"states": list(self.if_states)}}


ACTIONS: Registry[Action] = Registry("action")


def _parse_if(f: Fields) -> list[str]:
    if not f.has("if"):
        return list(DEFAULT_IF_STATES)
    cond = Fields(f.get("if"), "if", f.diags, f.loc_of("if"))
    states = cond.get("states", DEFAULT_IF_STATES, parse_states)
    cond.done()
    return states


@ACTIONS.register("schedule")
@dataclass
class ScheduleAction(Action):
    job_id: str
    args: dict[str, str] = field(default_factory=dict)
    if_states: list[str] = field(default_factory=lambda: list(DEFAULT_IF_STATES))

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> ScheduleAction:
        return cls(job_id=f.require("job_id", as_str), args=f.get("args", {}, as_args),
                   if_states=_parse_if(f))

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "job_id": self.job_id, "args": dict(self.args), **self.if_jso()}


@ACTIONS.register("retry")
@dataclass
class RetryAction(Action):
    count: int = 1
    delay: float = 0.0
    backoff: float = 1.0
    if_states: list[str] = field(default_factory=lambda: ["failure", "error"])

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> RetryAction:
        count = f.get("count", 1, as_int)
        backoff = f.get("backoff", 1.0, _positive_number)
        if count < 0:
            raise JobError("count must not be negative", f.loc_of("count"))
        if_states = _parse_if(f) if f.has("if") else ["failure", "error"]
        return cls(count=count, delay=f.get("delay", 0.0, parse_duration), backoff=backoff,
                   if_states=if_states)

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "count": self.count, "delay": self.delay,
                "backoff": self.backoff, **self.if_jso()}


def _positive_number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


@ACTIONS.register("command")
@dataclass
class CommandAction(Action):
    argv: list[str] | None = None
    command: str | None = None
    if_states: list[str] = field(default_factory=lambda: list(DEFAULT_IF_STATES))

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> CommandAction:
        argv = f.get("argv", None, as_str_list)
        command = f.get("command", None, as_str)
        if (argv is None) == (command is None):
            raise JobError("a command action needs exactly one of 'argv' or 'command'", f.loc)
        return cls(argv=argv, command=command, if_states=_parse_if(f))

    def to_jso(self) -> dict[str, Any]:
        jso: dict[str, Any] = {"type": self.TYPE}
        if self.argv is not None:
            jso["argv"] = list(self.argv)
        else:
            jso["command"] = self.command
        return {**jso, **self.if_jso()}


@ACTIONS.register("webhook")
@dataclass
class WebhookAction(Action):
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    if_states: list[str] = field(default_factory=lambda: list(DEFAULT_IF_STATES))

    @classmethod
    def from_jso(cls, f: Fields, ctx: ParseContext) -> WebhookAction:
        url = f.require("url", as_str)
        if not url.startswith(("http://", "https://", "{{")):
            raise JobError(f"url must start with http:// or https://, not {url!r}", f.loc_of("url"))
        return cls(url=url, headers=f.get("headers", {}, as_args), if_states=_parse_if(f))

    def to_jso(self) -> dict[str, Any]:
        return {"type": self.TYPE, "url": self.url, "headers": dict(self.headers), **self.if_jso()}


def parse_action(value: Any, loc: Location | None, ctx: ParseContext) -> Action:
    return ACTIONS.parse(value, loc, ctx)


def parse_actions(value: Any, loc: Location | None, ctx: ParseContext) -> list[Action]:
    return ACTIONS.parse_list(value, loc, ctx)


def parse_successors(value: Any, loc: Location | None, ctx: ParseContext) -> list[Action]:
    """`successors: report` (or a list): schedule each with the same args on success."""
    actions: list[Action] = []
    for item, item_loc in items_with_locs(value, loc):
        with ctx.diags.collect():
            if isinstance(item, str):
                actions.append(ScheduleAction(job_id=item, if_states=["success"]))
                continue
            f = Fields(item, "successor", ctx.diags, item_loc)
            actions.append(ScheduleAction(job_id=f.require("job_id", as_str),
                                          args=f.get("args", {}, as_args), if_states=["success"]))
            f.done()
    return actions

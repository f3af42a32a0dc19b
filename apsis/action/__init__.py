"""Actions: what happens when a run reaches a state.

Each action type parses itself and, rendered for a run, fires itself with an
`ActionContext`: the few things an action may ask of the daemon.  The engine
decides when (the run's transition into one of `if_states`) and never looks at
an action's type.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import JobError, Location
from ..lib.registry import Registry
from ..lib.strict import Fields, as_args, as_int, as_str, as_str_list, items_with_locs
from ..lib.timefmt import parse_duration
from ..parse_context import ParseContext
from ..model.states import FINISHED
from ..cond import parse_states

if TYPE_CHECKING:
    from ..model.run import Run

DEFAULT_IF_STATES = sorted(s.value for s in FINISHED)
WEBHOOK_ATTEMPTS = 5
COMMAND_TIMEOUT = 300.0


class ActionContext(Protocol):
    """What an action may ask of the daemon."""

    async def schedule(self, job_id: str, args: dict[str, str], *, inherit: dict[str, str]) -> Run:
        """A new run of `job_id` now; params not in `args` come from `inherit`."""

    async def retry(self, run: Run, *, when: dt.datetime) -> Run:
        """The next attempt of `run`'s instance at `when` (raises LookupError if its job
        is gone)."""

    async def log(self, run: Run, message: str) -> None:
        """A line in the run's log."""

    @property
    def url(self) -> str:
        """The API's base URL, for a command that wants to call back (`APSIS_URL`)."""


class Action:
    TYPE = "?"
    if_states: list[str]

    def to_jso(self) -> dict[str, Any]:
        raise NotImplementedError

    def if_jso(self) -> dict[str, Any]:
        return {"if": {"states": list(self.if_states)}}

    def fires_on(self, state: str) -> bool:
        return state in self.if_states

    async def fire(self, run: Run, ctx: ActionContext) -> None:
        """Does the action for `run` (its templates rendered); raising logs the failure
        in the run's log, never changes the run."""
        raise NotImplementedError(f"action type {self.TYPE!r} cannot fire")


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

    async def fire(self, run: Run, ctx: ActionContext) -> None:
        new = await ctx.schedule(self.job_id, dict(self.args), inherit=run.args)
        await ctx.log(run, f"scheduled {new.run_id} of {self.job_id}")


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

    async def fire(self, run: Run, ctx: ActionContext) -> None:
        if run.attempt > self.count:
            await ctx.log(run, f"retry: no attempts left ({self.count} retries used)")
            return
        delay = self.delay * self.backoff ** (run.attempt - 1)
        try:
            new = await ctx.retry(run, when=dt.datetime.now(dt.UTC) + dt.timedelta(seconds=delay))
        except LookupError:
            await ctx.log(run, f"retry: job {run.job_id} no longer exists")
            return
        await ctx.log(run, f"retry: attempt {run.attempt + 1} is {new.run_id}"
                           + (f", in {delay:g}s" if delay else ""))


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

    async def fire(self, run: Run, ctx: ActionContext) -> None:
        argv = self.argv if self.argv is not None else ["/bin/bash", "-c", str(self.command)]
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, env=command_env(run, ctx))
        try:
            out, _ = await asyncio.wait_for(proc.communicate(json.dumps(run.to_jso()).encode()),
                                            COMMAND_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await ctx.log(run, f"command action timed out after {COMMAND_TIMEOUT:g}s")
            return
        tail = out.decode("utf-8", "replace").strip()[-500:]
        await ctx.log(run, f"command action exited {proc.returncode}" + (f": {tail}" if tail else ""))


def command_env(run: Run, ctx: ActionContext) -> dict[str, str]:
    """The daemon's environment plus the run's `APSIS_*`, so a command needs no JSON
    parsing to know which run it is about (docs/jobs.md)."""
    return {**os.environ, "APSIS_RUN_ID": run.run_id, "APSIS_JOB_ID": run.job_id,
            "APSIS_STATE": run.state.value, "APSIS_URL": ctx.url}


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

    async def fire(self, run: Run, ctx: ActionContext) -> None:
        import httpx

        delay = 1.0
        last = ""
        async with httpx.AsyncClient(timeout=10.0) as client:
            for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
                try:
                    response = await client.post(self.url, json=run.to_jso(), headers=self.headers)
                    if response.status_code < 500:
                        await ctx.log(run, f"webhook {self.url}: HTTP {response.status_code}")
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = str(exc) or type(exc).__name__
                if attempt < WEBHOOK_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay *= 2
        await ctx.log(run, f"webhook {self.url} failed after {WEBHOOK_ATTEMPTS} attempts: {last}")


def parse_action(value: Any, loc: Location | None, ctx: ParseContext) -> Action:
    return ACTIONS.parse(value, loc, ctx)


def bind_action(rendered: dict[str, Any]) -> Action:
    """A run's action from its rendered JSON (as stored with the run); ValueError if a
    rendered value is not valid."""
    from ..errors import Diagnostics

    diags = Diagnostics()
    try:
        return ACTIONS.parse(rendered, None, ParseContext(diags=diags))
    except JobError as exc:
        problems = "; ".join(d.message for d in diags.errors) or exc.message
        raise ValueError(f"action {rendered.get('type')!r}: {problems}") from None


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

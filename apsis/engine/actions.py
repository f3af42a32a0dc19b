"""Actions: fired when a run's committed transition enters one of their states (SPEC §1.2).

Each action runs in its own task; a failing action is written to the run's log
and never changes the run's state.  What an action does is the action's own
business (apsis/action); this module decides when, and gives it a context.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Sequence
from typing import Protocol

from ..action import Action, ActionContext, bind_action
from ..model.run import Run
from ..model.states import FINISHED, State

log = logging.getLogger("apsis.actions")


class ActionsHost(Protocol):
    context: ActionContext

    def spawn(self, coro: Awaitable, name: str = ...) -> object: ...


class Actions:
    def __init__(self, host: ActionsHost, daemon_actions: Sequence[dict] = ()) -> None:
        self.host = host
        # Actions of apsis.yaml, for every run; bound once, they have no templates.
        self._daemon_actions = [bind_action(a) for a in daemon_actions]

    def on_transition(self, run: Run, frm: State, to: State) -> None:
        if frm in FINISHED:  # `mark` corrects history; it does not trigger actions again
            return
        for action in [*self._bound(run), *self._daemon_actions]:
            if action.fires_on(to.value):
                self.host.spawn(self._fire(run, action), f"action-{action.TYPE}")

    def _bound(self, run: Run) -> list[Action]:
        actions = []
        for jso in run.actions:
            try:
                actions.append(bind_action(jso))
            except ValueError as exc:  # stored by an older version, or hand-edited
                log.warning("run %s: %s", run.run_id, exc)
        return actions

    async def _fire(self, run: Run, action: Action) -> None:
        ctx = self.host.context
        try:
            await action.fire(run, ctx)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("action %s of %s failed: %s", action.TYPE, run.run_id, exc)
            await ctx.log(run, f"{action.TYPE} action failed: {exc}")

"""Conditions: a waiting run starts when all of its conditions hold.

Conditions are re-checked when something they watch changes (a run of an
instance they watch changes state), not on a timer.  Conditions that need the
store look first; then every condition is checked and the run asked to start
without yielding to the event loop, and the run counts as `starting` from that
moment (RunBook.state_of), so two runs never both take the last `max_running` slot.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from ..cond import BoundCondition, RunsView, Verdict
from ..model.run import InstanceKey, Run
from ..model.states import State

log = logging.getLogger("apsis.waiter")


class WaiterHost(Protocol):
    """What the waiter needs of the engine."""

    view: RunsView

    def spawn(self, coro: Awaitable, name: str = ...) -> object: ...

    def set_timer(self, run: Run, when: dt.datetime, callback: Callable[[], object]) -> None: ...

    async def start_run(self, run: Run) -> None: ...

    async def end_waiting(self, run: Run, state: State, message: str) -> None: ...

    async def waiting_because(self, run: Run, reason: str | None) -> None: ...


class Waiter:
    def __init__(self, host: WaiterHost, max_time: float | None = None) -> None:
        self.host = host
        self.max_time = max_time
        self.waiting: dict[str, Run] = {}
        self._conds: dict[str, list[BoundCondition]] = {}
        # instance key → ids of waiting runs whose conditions watch that instance
        self._watchers: dict[InstanceKey, set[str]] = {}
        self._checking: set[str] = set()
        self._again: set[str] = set()

    def add(self, run: Run, conds: list[BoundCondition]) -> None:
        self.waiting[run.run_id] = run
        self._conds[run.run_id] = conds
        for key in _watched(conds):
            self._watchers.setdefault(key, set()).add(run.run_id)
        if self.max_time:
            since = run.time_of(State.WAITING) or dt.datetime.now(dt.UTC)
            self.host.set_timer(run, since + dt.timedelta(seconds=self.max_time),
                                lambda: self.host.spawn(self._expire(run), "waiting-max-time"))
        self.recheck(run)

    def remove(self, run: Run) -> None:
        if self.waiting.pop(run.run_id, None) is None:
            return
        for key in _watched(self._conds.pop(run.run_id, [])):
            ids = self._watchers.get(key)
            if ids:
                ids.discard(run.run_id)
                if not ids:
                    del self._watchers[key]

    def on_transition(self, run: Run) -> None:
        """After every committed transition (or a failed one, whose claim is gone):
        wake the runs that watch its instance."""
        if run.run_id in self.waiting and run.state != State.WAITING:
            self.remove(run)
        self.wake(run.instance)

    def wake(self, key: InstanceKey) -> None:
        for waiting_id in list(self._watchers.get(key, ())):
            waiting = self.waiting.get(waiting_id)
            if waiting is not None:
                self.recheck(waiting)

    def recheck(self, run: Run) -> None:
        if run.run_id in self._checking:
            self._again.add(run.run_id)  # something changed mid-check: check once more after
            return
        self._checking.add(run.run_id)
        self.host.spawn(self._check(run), "condition-check")

    async def _check(self, run: Run) -> None:
        try:
            while True:
                self._again.discard(run.run_id)
                await self._check_once(run)
                if run.run_id not in self._again or run.run_id not in self.waiting:
                    break
        finally:
            self._checking.discard(run.run_id)

    async def _check_once(self, run: Run) -> None:
        conds = self._conds.get(run.run_id)
        if conds is None:
            return
        view = self.host.view
        for cond in conds:  # these may await the store
            verdict = await cond.look(view)
            if run.run_id not in self.waiting:
                return
            if not verdict.met:
                await self._not_met(run, verdict)
                return
        # From here to the start request, no awaits: the checks and the claim are atomic.
        for cond in conds:
            verdict = cond.check(view)
            if not verdict.met:
                await self._not_met(run, verdict)
                return
        self.remove(run)
        await self.host.start_run(run)

    async def _not_met(self, run: Run, verdict: Verdict) -> None:
        if verdict.fail is not None:
            self.remove(run)
            await self.host.end_waiting(run, verdict.fail, verdict.reason or "condition failed")
        else:
            await self.host.waiting_because(run, verdict.reason)

    async def _expire(self, run: Run) -> None:
        if run.run_id in self.waiting and run.state == State.WAITING:
            self.remove(run)
            await self.host.end_waiting(
                run, State.ERROR, f"waited longer than waiting.max_time ({self.max_time:g}s)")


def _watched(conds: list[BoundCondition]) -> list[InstanceKey]:
    return [key for cond in conds for key in cond.watches()]

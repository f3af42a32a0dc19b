"""Conditions: a waiting run starts when all of its conditions hold.

Conditions are re-checked when something they depend on changes (a run of the
instance they watch changes state), not on a timer.  The final check and the
transition to `starting` happen without yielding to the event loop, so two runs
can never both take the last `max_running` slot.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import TYPE_CHECKING, Any

from ..model.run import Run, instance_key
from ..model.states import State

if TYPE_CHECKING:
    from .core import Engine

log = logging.getLogger("apsis.waiter")

ACTIVE = frozenset({State.STARTING, State.RUNNING})


class Waiter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiting: dict[str, Run] = {}
        # instance key → ids of waiting runs whose conditions watch that instance
        self._watchers: dict[tuple, set[str]] = {}
        self._checking: set[str] = set()
        self._again: set[str] = set()

    def add(self, run: Run) -> None:
        self.waiting[run.run_id] = run
        for key in self._watched(run):
            self._watchers.setdefault(key, set()).add(run.run_id)
        max_time = self.engine.config.waiting_max_time
        if max_time:
            since = run.time_of(State.WAITING) or dt.datetime.now(dt.UTC)
            self.engine.set_timer(run, since + dt.timedelta(seconds=max_time),
                                  lambda: self.engine.spawn(self._expire(run), "waiting-max-time"))
        self.recheck(run)

    def remove(self, run: Run) -> None:
        if self.waiting.pop(run.run_id, None) is None:
            return
        for key in self._watched(run):
            ids = self._watchers.get(key)
            if ids:
                ids.discard(run.run_id)
                if not ids:
                    del self._watchers[key]

    def _watched(self, run: Run) -> list[tuple]:
        keys = []
        for cond in run.conditions:
            kind = cond.get("type")
            if kind == "dependency":
                keys.append(instance_key(cond["job_id"], self._dep_args(run, cond)))
            elif kind in ("max_running", "skip_duplicate"):
                keys.append(instance_key(*_counted_instance(run, cond)))
        return keys

    def _dep_args(self, run: Run, cond: dict[str, Any]) -> dict[str, str]:
        """The dependency's args: those given, plus this run's args of the same names."""
        target = self.engine.jobs_dir.jobs.get(cond["job_id"])
        args = dict(cond.get("args") or {})
        if target is not None:
            for param in target.params:
                if param not in args and param in run.args:
                    args[param] = run.args[param]
        return args

    def on_transition(self, run: Run, frm: State, to: State) -> None:
        """Called after every committed transition: wake the runs that watch its instance."""
        if run.run_id in self.waiting and to != State.WAITING:
            self.remove(run)
        for waiting_id in list(self._watchers.get(run.instance, ())):
            waiting = self.waiting.get(waiting_id)
            if waiting is not None:
                self.recheck(waiting)

    def recheck(self, run: Run) -> None:
        if run.run_id in self._checking:
            self._again.add(run.run_id)  # something changed mid-check: check once more after
            return
        self._checking.add(run.run_id)
        self.engine.spawn(self._check(run), "condition-check")

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
        engine = self.engine
        # Dependencies may need the store (finished runs); ask first, decide after.
        for cond in run.conditions:
            if cond.get("type") != "dependency":
                continue
            verdict = await self._dependency(run, cond)
            if run.state != State.WAITING:
                return
            if verdict is False:
                return
            if isinstance(verdict, str):
                self.remove(run)
                await engine.transition(run, State.ERROR, verdict)
                return
        # From here on, no awaits until the transition: the checks and the start are atomic.
        for cond in run.conditions:
            kind = cond.get("type")
            if kind == "max_running":
                try:
                    limit = int(str(cond.get("count", 1)).strip())
                except ValueError:
                    self.remove(run)
                    await engine.transition(run, State.ERROR,
                                            f"max_running count is not a number: {cond.get('count')!r}")
                    return
                active = sum(r.state in ACTIVE
                             for r in engine.runs_of_instance(*_counted_instance(run, cond)))
                if active >= limit:
                    return
            elif kind == "skip_duplicate":
                check = {State(s) for s in cond.get("check_states", ["waiting", "starting", "running"])}
                dupes = [r for r in engine.runs_of_instance(run.job_id, run.args)
                         if r.run_id != run.run_id and r.state in check]
                if dupes:
                    self.remove(run)
                    target = State(cond.get("target_state", "skipped"))
                    await engine.transition(run, target, f"duplicate of {dupes[0].run_id} "
                                                         f"({dupes[0].state.value})", force=True)
                    return
            elif kind == "const":
                if not cond.get("value"):
                    return
            elif kind != "dependency":
                self.remove(run)
                await engine.transition(run, State.ERROR, f"unknown condition type {kind!r}")
                return
        self.remove(run)
        await engine.runner.start_run(run)

    async def _dependency(self, run: Run, cond: dict[str, Any]) -> bool | str:
        """True when met, False when not yet, or an error message when it never can be."""
        engine = self.engine
        job_id = cond["job_id"]
        args = self._dep_args(run, cond)
        wanted = {State(s) for s in cond.get("states", ["success"])}
        live = engine.runs_of_instance(job_id, args)
        if any(r.state in wanted for r in live):
            return True
        finished_wanted = [s.value for s in wanted if s.finished]
        if finished_wanted:
            found = (await engine.store.query_runs(job_id=job_id, args=args,
                                                      states=finished_wanted, limit=1)).runs
            if found:
                return True
        if cond.get("exist"):
            can_reach = any(not r.state.finished for r in live)
            if not can_reach:
                return (f"dependency {job_id} {args} has no run that exists or can still become "
                        f"{'/'.join(sorted(s.value for s in wanted))}")
        return False

    async def _expire(self, run: Run) -> None:
        if run.run_id in self.waiting and run.state == State.WAITING:
            self.remove(run)
            await self.engine.transition(
                run, State.ERROR, f"waited longer than waiting.max_time "
                                  f"({self.engine.config.waiting_max_time:g}s)")


def _counted_instance(run: Run, cond: dict[str, Any]) -> tuple[str, dict[str, str]]:
    """The instance a max_running condition counts: its own job_id/args, else the run's."""
    args = cond.get("args")
    return cond.get("job_id") or run.job_id, dict(args) if args is not None else run.args

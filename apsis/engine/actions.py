"""Actions: what happens when a run reaches a state (SPEC §1.2).

Actions run in their own tasks; a failing action is written to the run's log
and never changes the run's state.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
from typing import TYPE_CHECKING, Any

from ..model.run import Run
from ..model.states import FINISHED, State

if TYPE_CHECKING:
    from .core import Engine

log = logging.getLogger("apsis.actions")

WEBHOOK_ATTEMPTS = 5
COMMAND_TIMEOUT = 300.0


class Actions:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def on_transition(self, run: Run, frm: State, to: State) -> None:
        if frm in FINISHED:  # `mark` corrects history; it does not trigger actions again
            return
        for action in [*run.actions, *self.engine.config.actions]:
            states = (action.get("if") or {}).get("states")
            if states is None:
                states = ["failure", "error"] if action.get("type") == "retry" else [s.value for s in FINISHED]
            if to.value in states:
                self.engine.spawn(self._run(run, action, to), f"action-{action.get('type')}")

    async def _run(self, run: Run, action: dict[str, Any], to: State) -> None:
        kind = action.get("type")
        try:
            if kind == "schedule":
                await self._schedule(run, action)
            elif kind == "retry":
                await self._retry(run, action)
            elif kind == "command":
                await self._command(run, action)
            elif kind == "webhook":
                await self._webhook(run, action)
            else:
                await self.engine.run_log(run, f"action: unknown type {kind!r}")
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("action %s of %s failed: %s", kind, run.run_id, exc)
            await self.engine.run_log(run, f"{kind} action failed: {exc}")

    async def _schedule(self, run: Run, action: dict[str, Any]) -> None:
        from .core import utcnow

        engine = self.engine
        job = engine.get_job(action["job_id"])
        args = dict(action.get("args") or {})
        for param in job.params:  # args not given are propagated from this run
            if param not in args and param in run.args:
                args[param] = run.args[param]
        args = engine.check_args(job, args)
        [new] = await engine.create_runs(job, args, times=[utcnow()])
        await engine.run_log(run, f"scheduled {new.run_id} of {job.job_id}")

    async def _retry(self, run: Run, action: dict[str, Any]) -> None:
        from .core import utcnow

        count = int(action.get("count", 1))
        if run.attempt > count:
            await self.engine.run_log(run, f"retry: no attempts left ({count} retries used)")
            return
        delay = float(action.get("delay", 0)) * float(action.get("backoff", 1)) ** (run.attempt - 1)
        engine = self.engine
        job = engine.jobs_dir.jobs.get(run.job_id)
        if job is None:
            stored = await engine.store.get_run_job(run.run_id)
            job = engine.inline_job(stored, run.job_id) if stored else None
        if job is None:
            await engine.run_log(run, f"retry: job {run.job_id} no longer exists")
            return
        when = utcnow() + dt.timedelta(seconds=delay)
        [new] = await engine.create_runs(job, run.args, times=[when], rerun_of=run.run_id,
                                         attempt=run.attempt + 1)
        await engine.run_log(run, f"retry: attempt {run.attempt + 1} is {new.run_id}"
                                  + (f", in {delay:g}s" if delay else ""))

    async def _command(self, run: Run, action: dict[str, Any]) -> None:
        stdin = json.dumps(run.to_jso()).encode()
        if action.get("argv"):
            proc = await asyncio.create_subprocess_exec(
                *action["argv"], stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        else:
            proc = await asyncio.create_subprocess_exec(
                "/bin/bash", "-c", action["command"], stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(stdin), COMMAND_TIMEOUT)
        except TimeoutError:
            proc.kill()
            await self.engine.run_log(run, f"command action timed out after {COMMAND_TIMEOUT:g}s")
            return
        tail = out.decode("utf-8", "replace").strip()[-500:]
        await self.engine.run_log(
            run, f"command action exited {proc.returncode}" + (f": {tail}" if tail else ""))

    async def _webhook(self, run: Run, action: dict[str, Any]) -> None:
        import httpx

        delay = 1.0
        last = ""
        async with httpx.AsyncClient(timeout=10.0) as client:
            for attempt in range(1, WEBHOOK_ATTEMPTS + 1):
                try:
                    response = await client.post(action["url"], json=run.to_jso(),
                                                 headers=action.get("headers") or {})
                    if response.status_code < 500:
                        await self.engine.run_log(
                            run, f"webhook {action['url']}: HTTP {response.status_code}")
                        return
                    last = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    last = str(exc) or type(exc).__name__
                if attempt < WEBHOOK_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay *= 2
        await self.engine.run_log(run, f"webhook {action['url']} failed after "
                                       f"{WEBHOOK_ATTEMPTS} attempts: {last}")

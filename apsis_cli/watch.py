"""Waiting for runs and following their output, from the event stream (never polling).

The order matters and is what makes `wait` exact:
  1. read the stream position (`GET /runs?limit=1` answers `seq`),
  2. GET each run: one already finished is done at once,
  3. follow `run_transition` events after that seq until every run has finished.
Any transition after step 1 is in the stream, and step 2 sees at least the state as of
step 1, so nothing is missed; the client resumes from the last seq after a lost
connection or a daemon restart, and a `reset` makes us GET the runs again.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, BinaryIO

from apsis.present import FINISHED_STATES

from .exitcodes import STATE_EXIT, ExitStatus

if TYPE_CHECKING:
    from apsis.client import Client

SNAPSHOT_CONCURRENCY = 16
STARTED_STATES = frozenset({"running", "stopping", *FINISHED_STATES})


def exit_code(run_ids: Sequence[str], states: dict[str, str]) -> int:
    """0 if all succeeded, else the code of the first run (in argument order) that did not."""
    for run_id in run_ids:
        code = STATE_EXIT.get(states.get(run_id, ""), ExitStatus.ERROR)
        if code != ExitStatus.SUCCESS:
            return int(code)
    return int(ExitStatus.SUCCESS)


class RunWatcher:
    """The latest known state of a set of runs, kept current from the event stream."""

    def __init__(self, client: Client, run_ids: Sequence[str],
                 on_finish: Callable[[dict[str, Any]], None] | None = None,
                 on_waiting: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.client = client
        self.run_ids = list(dict.fromkeys(run_ids))
        self.runs: dict[str, dict[str, Any]] = {}
        self._on_finish = on_finish
        self._on_waiting = on_waiting  # called as a waiting run's reason changes
        self._announced: set[str] = set()
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._error: BaseException | None = None
        self.seq = 0  # the stream position the runs are known as of

    # -------------------------------------------------------------- state

    def state(self, run_id: str) -> str:
        return self.runs.get(run_id, {}).get("state", "")

    def finished(self, run_id: str) -> bool:
        return self.state(run_id) in FINISHED_STATES

    def all_finished(self) -> bool:
        return all(self.finished(r) for r in self.run_ids)

    def states(self) -> dict[str, str]:
        return {r: self.state(r) for r in self.run_ids}

    def _update(self, run: dict[str, Any]) -> None:
        run_id = run.get("run_id")
        if run_id not in self.runs:
            return
        before = self.runs[run_id]
        self.runs[run_id] = {**before, **run}
        now = self.runs[run_id]
        if (self._on_waiting and now.get("state") == "waiting" and now.get("message")
                and (now.get("message"), "waiting") != (before.get("message"), before.get("state"))):
            self._on_waiting(now)
        if self.finished(run_id) and run_id not in self._announced:
            self._announced.add(run_id)
            if self._on_finish:
                self._on_finish(self.runs[run_id])
        self._changed.set()

    # -------------------------------------------------------------- lifecycle

    async def start(self, seq: int | None = None,
                    known: list[dict[str, Any]] | None = None) -> RunWatcher:
        """Snapshot the runs (raising ApsisNotFound for an unknown one), then follow.

        `seq` and `known` skip the snapshot: runs the caller got (from creating them)
        after reading `seq`, so every later transition is in the stream after it.
        """
        if seq is not None and known is not None:
            for run in known:
                self.runs.setdefault(run["run_id"], {"run_id": run["run_id"]})
                self._update(run)
        else:
            seq = await self._snapshot()
        self.seq = seq
        if not self.all_finished():
            self._task = asyncio.create_task(self._follow(seq))
        return self

    async def _snapshot(self) -> int:
        page = await self.client.runs(limit=1)
        seq = int(page.get("seq") or 0)
        for begin in range(0, len(self.run_ids), SNAPSHOT_CONCURRENCY):
            batch = self.run_ids[begin:begin + SNAPSHOT_CONCURRENCY]
            for run_id, run in zip(batch, await asyncio.gather(*map(self.client.run, batch))):
                self.runs.setdefault(run_id, {"run_id": run_id})
                self._update(run)
        return seq

    async def _follow(self, seq: int) -> None:
        try:
            while not self.all_finished():
                pending = [r for r in self.run_ids if not self.finished(r)]
                filters: dict[str, Any] = {"types": ["run_transition", "run_log"]}
                if len(pending) == 1:
                    filters["run_id"] = pending[0]
                async for event in self.client.events(since=seq, **filters):
                    if event.get("seq") is not None:
                        seq = self.seq = int(event["seq"])
                    if event.get("type") == "reset":
                        for run_id in self.run_ids:
                            if not self.finished(run_id):
                                self._update(await self.client.run(run_id))
                    elif event.get("type") == "run_transition":
                        run = dict(event.get("run") or {})
                        if event.get("to"):
                            run["state"] = event["to"]
                        self._update(run)
                    elif event.get("type") == "run_log":
                        # An entry of the run's own state is its message now (why it waits).
                        entry = event.get("entry") or {}
                        run_id = event.get("run_id")
                        # (A transition without a message logs its state's name: not one.)
                        if (entry.get("state") and entry.get("state") == self.state(run_id)
                                and entry.get("message") != entry.get("state")):
                            self._update({"run_id": run_id, "message": entry.get("message")})
                    if self.all_finished():
                        return
                # The stream ended without an error: take a fresh snapshot and go on.
                seq = self.seq = await self._snapshot()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - handed to whoever waits, re-raised there
            self._error = exc
            self._changed.set()

    async def close(self) -> None:
        if self._task and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Returns once `predicate()` holds; raises what broke the event stream."""
        while not predicate():
            if self._error is not None:
                raise self._error
            if self._task is None or self._task.done():
                if predicate():
                    return
                if self._error is not None:
                    raise self._error
                # Every run finished, so nothing will change any more.
                return
            self._changed.clear()
            await self._changed.wait()

    async def wait_finished(self) -> dict[str, str]:
        await self.wait_for(self.all_finished)
        return self.states()

    async def run_to_end(self, seq: int | None = None,
                         known: list[dict[str, Any]] | None = None) -> dict[str, str]:
        """`start`, wait until every run has finished, and close, interrupted or not."""
        try:
            await self.start(seq, known)
            return await self.wait_finished()
        finally:
            await self.close()

    async def wait_started(self, run_id: str) -> None:
        await self.wait_for(lambda: self.state(run_id) in STARTED_STATES)


# How long a failed run's retry action may take to create the retry (or say it will not).
RETRY_GRACE = 5.0


async def find_retry(client: Client, run: dict[str, Any],
                     seq: int) -> tuple[dict[str, Any], int | None] | None:
    """The run a failed run's retry action created (its summary, and the stream position
    just before its creation to follow it from, None when it is to be looked up), or None.

    Actions fire just after the run finishes: the retry's creation, then the failed
    run's `retry: …` log entry, follow in the stream after `seq`; the entry ends the
    search (with no retry when it says there are no attempts left).  A run that had
    finished before it was watched has that entry in its log already.
    """
    if run.get("state") not in ("failure", "error") or not any(
            isinstance(a, dict) and a.get("type") == "retry" for a in run.get("actions") or []):
        return None
    import re

    for entry in await client.run_log(run["run_id"]):
        text = str(entry.get("message") or "")
        if text.startswith("retry:"):
            found = re.search(r"\bis (r\d+)\b", text)
            return (await client.run(found.group(1)), None) if found else None
    retry: tuple[dict[str, Any], int | None] | None = None
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(RETRY_GRACE):
            async with contextlib.aclosing(client.events(
                    since=seq, types=["run_transition", "run_log"])) as events:
                async for event in events:
                    if (event.get("type") == "run_transition"
                        and (event.get("run") or {}).get("rerun_of") == run.get("run_id")):
                        retry = event["run"], int(event.get("seq") or 1) - 1
                    elif (event.get("type") == "run_log"
                          and event.get("run_id") == run.get("run_id")
                          and str((event.get("entry") or {}).get("message") or "")
                          .startswith("retry:")):
                        break
    return retry


def default_output_id(run: dict[str, Any]) -> str:
    """`output`, or `stdout` for a program with split outputs."""
    outputs = [o.get("output_id") for o in run.get("outputs") or []]
    if "output" in outputs:
        return "output"
    program = run.get("program") or {}
    if "stdout" in outputs or (isinstance(program, dict) and program.get("outputs") == "split"):
        return "stdout"
    return "output"


def write_bytes(data: bytes, to: BinaryIO | None = None) -> None:
    """Raw bytes to stdout (or `to`), as they come: ANSI and non-UTF-8 bytes unchanged."""
    out = to or sys.stdout.buffer
    out.write(data)
    out.flush()


async def stream_output(client: Client, watcher: RunWatcher, run_id: str,
                        output_id: str | None, start: int = 0) -> None:
    """Streams a run's output live, from when it starts until it ends. With no output
    named, a program with split outputs streams both, stderr to stderr: as if run here."""
    await watcher.wait_started(run_id)
    run = watcher.runs.get(run_id, {})
    times = run.get("times") or {}
    if watcher.finished(run_id) and not (times.get("running") or run.get("outputs")):
        return  # never ran (skipped, or an error before it started): no output
    if output_id is None and default_output_id(run) == "stdout":
        await asyncio.gather(_follow_output(client, run_id, "stdout", start, named=False),
                             _follow_output(client, run_id, "stderr", 0, named=False,
                                            to=sys.stderr.buffer))
        return
    await _follow_output(client, run_id, output_id or default_output_id(run), start,
                         named=output_id is not None)


async def _follow_output(client: Client, run_id: str, output_id: str, start: int, *,
                         named: bool, to: BinaryIO | None = None) -> None:
    from apsis.client import ApsisNotFound

    try:
        async for chunk in client.output(run_id, output_id, start=start, follow=True):
            if chunk:
                write_bytes(chunk, to)
    except ApsisNotFound:
        if named:  # asked for by name: say so; the default may just not exist
            raise


async def tail_offset(client: Client, run_id: str, output_id: str, lines: int) -> tuple[int, bytes]:
    """(offset, bytes) of the last `lines` lines, reading backwards in growing ranges."""
    outputs = {o.get("output_id"): o for o in await client.outputs(run_id)}
    length = int((outputs.get(output_id) or {}).get("length") or 0)
    if lines <= 0 or length == 0:
        return length, b""
    size = 64 * 1024
    while True:
        begin = max(0, length - size)
        data = await client.output_bytes(run_id, output_id, start=begin, end=length)
        body = data[:-1] if data.endswith(b"\n") else data
        if body.count(b"\n") >= lines or begin == 0:
            cut = len(body)
            for _ in range(lines):
                cut = body.rfind(b"\n", 0, cut)
                if cut < 0:
                    break
            keep = data[cut + 1:] if cut >= 0 else data
            if cut < 0 and begin > 0:
                size *= 4
                continue
            return length, keep
        size *= 4

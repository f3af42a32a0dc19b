"""`apsis wait` and `apsis output`: the scripting heart, exit codes per SPEC §1.4."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

import click

from apsis import present

from . import fmt
from .common import UserError
from .connect import call
from .exitcodes import ExitStatus
from .parse import parse_duration, parse_run_id
from .watch import (
    RunWatcher,
    default_output_id,
    exit_code,
    find_retry,
    stream_output,
    tail_offset,
    write_bytes,
)

if TYPE_CHECKING:
    from apsis.client import Client


def report_finish(quiet: bool) -> Any:
    """A callback printing `r123 success` on stderr as each run finishes."""

    def report(run: dict[str, Any]) -> None:
        if quiet:
            return
        state = run.get("state", "")
        line = f"{run.get('run_id')} {state}"
        if run.get("message") and state != "success":
            line += f": {run['message']}"
        if fmt.color_enabled(sys.stderr):
            line = fmt.click_state(line, state, symbol=False)
        click.echo(line, err=True)

    return report


def report_waiting(quiet: bool) -> Any:
    """A callback printing `r123 waiting: why` on stderr whenever the reason changes."""

    def report(run: dict[str, Any]) -> None:
        if not quiet:
            click.echo(f"{run.get('run_id')} waiting: {run.get('message')}", err=True)

    return report


@contextlib.asynccontextmanager
async def deadline(timeout: float | None, watcher_ref: list[RunWatcher]) -> AsyncIterator[None]:
    """Exit 124 with the unfinished runs named when `timeout` expires."""
    try:
        async with asyncio.timeout(timeout):
            yield
    except TimeoutError:
        pending = []
        if watcher_ref:
            w = watcher_ref[0]
            pending = [f"{r} ({w.state(r) or '?'})" for r in w.run_ids if not w.finished(r)]
        raise UserError(f"timed out after {present.format_elapsed(timeout)}"
                        + (f"; still unfinished: {', '.join(pending)}" if pending else ""),
                        None, ExitStatus.TIMEOUT) from None


async def wait_runs(client: Client, run_ids: Sequence[str], timeout: float | None,
                    quiet: bool) -> RunWatcher:
    """Waits until every run has finished; returns the watcher with their final runs."""
    ref: list[RunWatcher] = []
    async with deadline(timeout, ref):
        watcher = RunWatcher(client, run_ids, on_finish=report_finish(quiet),
                             on_waiting=report_waiting(quiet))
        ref.append(watcher)
        await watcher.run_to_end()
    return watcher


async def settle_retries(client: Client, watcher: RunWatcher, ids: Sequence[str], *,
                         follow: bool, quiet: bool) -> dict[str, dict[str, Any]]:
    """Each finished run, or with `follow` the last attempt of its retries (by the first
    run's id); says `r12 failure: retry r13 scheduled at …` for each retry found."""
    final: dict[str, dict[str, Any]] = {}
    for run_id in ids:
        run, seq = watcher.runs[run_id], watcher.seq
        actions = run.get("actions")  # (an attempt's summary lacks them: they are the same)
        while (found := await find_retry(client, {"actions": actions, **run}, seq)) is not None:
            retry, created_at = found
            if not quiet:
                when = fmt.format_time((retry.get("times") or {}).get("schedule"), compact=False)
                click.echo(f"{run.get('run_id')} {run.get('state')}: retry {retry['run_id']} "
                           f"scheduled at {when} (attempt {retry.get('attempt') or '?'})", err=True)
            if not follow:
                break
            attempt = RunWatcher(client, [retry["run_id"]], on_finish=report_finish(quiet),
                                 on_waiting=report_waiting(quiet))
            # Followed from its creation: its end, and its own retry, are after that.
            await attempt.run_to_end(created_at, None if created_at is None else [retry])
            run, seq = attempt.runs[retry["run_id"]], attempt.seq
        final[run_id] = run
    return final


class StatusLine:
    """One line on a terminal's stderr, rewritten in place while `apsis wait` waits
    (`waiting 0:00:12: r12 running, r13 waiting`); nothing at all when stderr is not one."""

    def __init__(self, watcher_ref: list[RunWatcher]) -> None:
        self._ref = watcher_ref
        self._shown = False
        self._started = asyncio.get_running_loop().time()

    def clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[K")
            sys.stderr.flush()
            self._shown = False

    def draw(self) -> None:
        if not self._ref:
            return
        w = self._ref[0]
        if not any(w.state(r) for r in w.run_ids):
            return  # not known yet
        pending = [f"{r} {w.state(r) or '?'}" for r in w.run_ids if not w.finished(r)]
        if not pending:
            return self.clear()
        elapsed = present.format_elapsed(asyncio.get_running_loop().time() - self._started)
        text = f"waiting {elapsed}: " + ", ".join(pending)
        import shutil

        width = shutil.get_terminal_size((80, 24)).columns - 1
        sys.stderr.write("\r\x1b[K" + (text if len(text) <= width else text[:width - 1] + "…"))
        sys.stderr.flush()
        self._shown = True

    async def run(self) -> None:
        while True:
            self.draw()
            await asyncio.sleep(1)


def wait(obj: dict[str, Any], run_ids: tuple[str, ...], timeout: str | None, quiet: bool,
         as_json: bool, follow_retries: bool = False) -> int:
    ids = [parse_run_id(r) for r in run_ids]
    seconds = parse_duration(timeout, "--timeout") if timeout else None
    silent = quiet or as_json

    async def main(client: Client) -> int:
        ref: list[RunWatcher] = []
        status = StatusLine(ref) if not silent and sys.stderr.isatty() else None
        drawing = asyncio.ensure_future(status.run()) if status else None

        def then_clear(report: Any) -> Any:
            def wrapped(run: dict[str, Any]) -> None:
                if status:
                    status.clear()
                report(run)
            return wrapped

        try:
            async with deadline(seconds, ref):
                watcher = RunWatcher(client, ids, on_finish=then_clear(report_finish(silent)),
                                     on_waiting=then_clear(report_waiting(silent)))
                ref.append(watcher)
                await watcher.run_to_end()
                if drawing:
                    drawing.cancel()
                    status.clear()
                final = await settle_retries(client, watcher, ids, follow=follow_retries,
                                             quiet=silent)
        finally:
            if drawing:
                drawing.cancel()
                status.clear()
        if as_json:
            click.echo(fmt.dumps([final[r] for r in ids]))
        return exit_code(ids, {r: final[r].get("state", "") for r in ids})

    return call(obj, main)


def output(obj: dict[str, Any], run_id: str, output_id: str | None, follow: bool, wait_: bool,
           tail: int | None, timeout: str | None) -> int:
    rid = parse_run_id(run_id)
    seconds = parse_duration(timeout, "--timeout") if timeout else None
    if follow and wait_:
        raise UserError("--follow and --wait do not go together",
                        "-f prints as it comes; --wait prints it all at the end")

    async def main(client: Client) -> int:
        if not (follow or wait_):
            run = await client.run(rid)
            await _print_stored(client, rid, output_id or default_output_id(run), tail)
            return int(ExitStatus.SUCCESS)
        ref: list[RunWatcher] = []
        async with deadline(seconds, ref):
            watcher = RunWatcher(client, [rid])
            ref.append(watcher)
            try:
                await watcher.start()
                if wait_:
                    await watcher.wait_finished()
                    run = watcher.runs[rid]
                    await _print_stored(client, rid, output_id or default_output_id(run), tail)
                else:
                    await watcher.wait_started(rid)
                    run = watcher.runs[rid]
                    if output_id is not None:
                        await _check_output_id(client, rid, output_id)
                    oid = output_id or default_output_id(run)
                    start = 0
                    if tail is not None and run.get("outputs"):
                        start, data = await tail_offset(client, rid, oid, tail)
                        write_bytes(data)
                    await stream_output(client, watcher, rid, oid, start)
                    await watcher.wait_finished()
            finally:
                await watcher.close()
        return exit_code([rid], watcher.states())

    return call(obj, main)


async def _print_stored(client: Client, rid: str, oid: str, tail: int | None) -> None:
    from apsis.client import ApsisNotFound

    try:
        if tail is not None:
            _, data = await tail_offset(client, rid, oid, tail)
        else:
            data = await client.output_bytes(rid, oid)
    except ApsisNotFound:
        run = await client.run(rid)
        if run.get("outputs") or oid != default_output_id(run):
            raise _no_output(rid, oid, run.get("outputs") or []) from None
        return  # the run has produced no output (yet): print nothing
    write_bytes(data)


async def _check_output_id(client: Client, rid: str, oid: str) -> None:
    """A started run lists its outputs: one it does not have is a usage error at once
    (the live stream would wait for it in silence until the run ends, then exit 0)."""
    outputs = await client.outputs(rid)
    if outputs and oid not in {o.get("output_id") for o in outputs}:
        raise _no_output(rid, oid, outputs)


def _no_output(rid: str, oid: str, outputs: list[dict[str, Any]]) -> UserError:
    return UserError(f"run {rid} has no output {oid!r}",
                     "outputs: " + (", ".join(o.get("output_id", "?") for o in outputs) or "none"),
                     ExitStatus.USAGE)


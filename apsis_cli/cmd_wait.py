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
from .watch import RunWatcher, default_output_id, exit_code, stream_output, tail_offset, write_bytes

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
        try:
            await watcher.start()
            await watcher.wait_finished()
        finally:
            await watcher.close()
    return watcher


def wait(obj: dict[str, Any], run_ids: tuple[str, ...], timeout: str | None, quiet: bool,
         as_json: bool) -> int:
    ids = [parse_run_id(r) for r in run_ids]
    seconds = parse_duration(timeout, "--timeout") if timeout else None

    async def main(client: Client) -> int:
        watcher = await wait_runs(client, ids, seconds, quiet or as_json)
        if as_json:
            click.echo(fmt.dumps([watcher.runs[r] for r in ids]))
        return exit_code(ids, watcher.states())

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
            raise UserError(f"run {rid} has no output {oid!r}",
                            "outputs: " + (", ".join(o.get("output_id", "?") for o in run.get("outputs") or []) or "none"),
                            ExitStatus.USAGE) from None
        return  # the run has produced no output (yet): print nothing
    write_bytes(data)


"""Commands that create runs: run, schedule, adhoc, backfill.

They print the ids of the runs they create, one a line (the runs as JSON with --json),
and with --wait exit by the runs' final states like `apsis wait`.
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any

import click

from apsis.model.job import missing_params

from . import fmt
from .common import UserError
from .connect import call
from .exitcodes import ExitStatus
from .parse import iso, parse_args, parse_duration, parse_time
from .resolve import resolve_job
from .watch import RunWatcher, exit_code, stream_output

if TYPE_CHECKING:
    from apsis.client import Client


# The most expected runs the API lists in one answer (GET /jobs/{id}/schedule).
MAX_BACKFILL = 10_000


def _announce(created: list[dict[str, Any]], *, as_json: bool, to_stderr: bool) -> None:
    if as_json:
        return  # printed once they are final (with --wait) or right after
    for run in created:
        click.echo(run["run_id"], err=to_stderr)


async def _stream_seq(client: Client, wait: bool) -> int | None:
    """The event stream's position before creating runs we are going to wait for."""
    return int((await client.runs(limit=1)).get("seq") or 0) if wait else None


async def _follow_created(client: Client, created: list[dict[str, Any]], *, wait: bool,
                          show_output: bool, timeout: float | None, as_json: bool,
                          seq: int | None = None, follow_retries: bool = False) -> int:
    """After creating: print ids, then optionally stream output and wait; the exit code."""
    ids = [r["run_id"] for r in created]
    _announce(created, as_json=as_json, to_stderr=show_output)
    if not (wait or show_output):
        if as_json:
            click.echo(fmt.dumps(created))
        return int(ExitStatus.SUCCESS)
    from .cmd_wait import deadline, report_finish, report_waiting, settle_retries

    ref: list[RunWatcher] = []
    async with deadline(timeout, ref):
        # With --output, the final states come after the output, not in the middle of it.
        watcher = RunWatcher(client, ids, on_finish=report_finish(quiet=as_json or show_output),
                             on_waiting=report_waiting(quiet=as_json))
        ref.append(watcher)
        try:
            await watcher.start(seq, created if seq is not None else None)
            if show_output:
                for run_id in ids:  # one after another, in the order created
                    await stream_output(client, watcher, run_id, None)
            await watcher.wait_finished()
        finally:
            await watcher.close()
        if show_output and not as_json:
            for run_id in ids:
                report_finish(quiet=False)(watcher.runs[run_id])
        final = await settle_retries(client, watcher, ids, follow=follow_retries, quiet=as_json)
    if as_json:
        click.echo(fmt.dumps([final[r] for r in ids]))
    return exit_code(ids, {r: final[r].get("state", "") for r in ids})


def create_runs(obj: dict[str, Any], job_id: str, args: tuple[str, ...], *, at: str | None,
                count: int = 1, stop: str | None = None, wait: bool = False,
                show_output: bool = False, timeout: str | None = None, as_json: bool = False,
                utc: bool = False, follow_retries: bool = False) -> int:
    """`apsis run` and `apsis schedule`."""
    bound = parse_args(args)
    at_iso = iso(parse_time(at, "--at", utc=utc)) if at else None
    stop_iso = iso(parse_time(stop, "--stop", utc=utc)) if stop else None
    seconds = parse_duration(timeout, "--timeout") if timeout else None

    async def main(client: Client) -> int:
        job = await resolve_job(client, job_id)
        _check_params(job, bound)
        seq = await _stream_seq(client, wait or show_output or follow_retries)
        created = await client.create_runs(job["job_id"], bound, schedule=at_iso, stop=stop_iso,
                                           count=count)
        return await _follow_created(client, created, wait=wait or follow_retries,
                                     show_output=show_output, timeout=seconds, as_json=as_json,
                                     seq=seq, follow_retries=follow_retries)

    return call(obj, main)


def _check_params(job: dict[str, Any], args: dict[str, str]) -> None:
    """Missing or unknown args, said here with the job's params as the hint."""
    params = job.get("params")
    if params is None:
        return
    params = [params] if isinstance(params, str) else list(params)
    unknown = [a for a in args if a not in params]
    missing = missing_params(params, args)
    usage = " ".join(f"{p}=…" for p in params) or "no args"
    if unknown:
        raise UserError(f"job {job['job_id']} has no param {', '.join(unknown)}",
                        f"it takes: {usage}", ExitStatus.USAGE)
    if missing:
        raise UserError(f"job {job['job_id']} needs {', '.join(missing)}",
                        f"give every param: {usage}", ExitStatus.USAGE)


def adhoc_job(command: tuple[str, ...], shell: bool) -> dict[str, Any]:
    """The inline job of `apsis adhoc`: an argv program (no shell) labelled ad-hoc."""
    if shell:
        line = command[0] if len(command) == 1 else shlex.join(command)
        program: dict[str, Any] = {"type": "shell", "command": line}
    else:
        program = {"type": "program", "argv": list(command)}
    return {"program": program, "metadata": {"labels": ["ad-hoc"]}}


def create_adhoc(obj: dict[str, Any], command: tuple[str, ...], *, at: str | None, shell: bool,
                 wait: bool, show_output: bool, timeout: str | None, as_json: bool,
                 utc: bool, follow_retries: bool = False) -> int:
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UserError("no command given", "apsis adhoc -- CMD ARG...")
    at_iso = iso(parse_time(at, "--at", utc=utc)) if at else None
    seconds = parse_duration(timeout, "--timeout") if timeout else None

    async def main(client: Client) -> int:
        seq = await _stream_seq(client, wait or show_output or follow_retries)
        created = await client.create_adhoc(adhoc_job(command, shell), schedule=at_iso)
        return await _follow_created(client, created, wait=wait or follow_retries,
                                     show_output=show_output, timeout=seconds, as_json=as_json,
                                     seq=seq, follow_retries=follow_retries)

    return call(obj, main)


def _schedule_time(item: dict[str, Any]) -> str | None:
    return item.get("time") or item.get("schedule") or (item.get("times") or {}).get("schedule")


def backfill(obj: dict[str, Any], job_id: str, args: tuple[str, ...], *, from_: str, to: str,
             dry_run: bool, max_parallel: int | None, wait: bool, as_json: bool,
             utc: bool) -> int:
    """Creates the runs of JOB's schedules in [from, to), optionally in waves."""
    wanted = parse_args(args)
    start = parse_time(from_, "--from", utc=utc)
    stop = parse_time(to, "--to", utc=utc)
    if stop <= start:
        raise UserError("--to must be after --from", "the window is [--from, --to)")

    async def main(client: Client) -> int:
        job = await resolve_job(client, job_id)
        exact = job["job_id"]
        items = await client.job_schedule(exact, start=iso(start), stop=iso(stop),
                                          limit=MAX_BACKFILL)
        if len(items) >= MAX_BACKFILL:
            raise UserError(f"the window holds {MAX_BACKFILL} or more runs of {exact}",
                            "backfill a shorter window at a time")
        # A time the schedule itself skips (a DST gap with `dst_gap: skip`) is not a run.
        items = [i for i in items if not i.get("skip_reason")
                 and all(str((i.get("args") or {}).get(k)) == v for k, v in wanted.items())]
        items.sort(key=lambda i: _schedule_time(i) or "")
        if not items:
            click.echo(f"no scheduled runs of {exact} in the window"
                       + (" with those args" if wanted else ""), err=True)
            return int(ExitStatus.SUCCESS)
        if dry_run:
            if as_json:  # one document, as every --json without --follow (SPEC §1.4)
                click.echo(fmt.dumps([{"job_id": exact, "args": item.get("args") or {},
                                       "time": _schedule_time(item)} for item in items]))
            else:
                for item in items:
                    click.echo(f"{fmt.format_time(_schedule_time(item), utc, compact=False)}  "
                               f"{exact}  {fmt.format_args(item.get('args'))}".rstrip())
            click.echo(f"{len(items)} run(s) would be created (dry run)", err=True)
            return int(ExitStatus.SUCCESS)
        return await _create_waves(client, exact, items, max_parallel, wait, as_json)

    return call(obj, main)


async def _create_waves(client: Client, job_id: str, items: list[dict[str, Any]],
                        max_parallel: int | None, wait: bool, as_json: bool) -> int:
    from .cmd_wait import wait_runs

    size = max_parallel or len(items)
    all_ids: list[str] = []
    states: dict[str, str] = {}
    # With --json, one JSON document (like `run --json`): the runs, final if waited for.
    runs: dict[str, dict[str, Any]] = {}
    for begin in range(0, len(items), size):
        wave: list[dict[str, Any]] = []
        for item in items[begin:begin + size]:
            wave += await client.create_runs(job_id, item.get("args") or {},
                                             schedule=_schedule_time(item), stop=item.get("stop"))
        for run in wave:
            runs[run["run_id"]] = run
            if not as_json:
                click.echo(run["run_id"])
        ids = [r["run_id"] for r in wave]
        all_ids += ids
        if max_parallel or wait:
            watcher = await wait_runs(client, ids, None, quiet=as_json)
            states.update(watcher.states())
            runs.update({r: watcher.runs[r] for r in ids if r in watcher.runs})
    if as_json:
        click.echo(fmt.dumps([runs[r] for r in all_ids]))
    if max_parallel or wait:
        return exit_code(all_ids, states)
    return int(ExitStatus.SUCCESS)


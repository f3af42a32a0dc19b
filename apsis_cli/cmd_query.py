"""Read-only commands: jobs, job, runs (with --follow), show, log, events, tui."""

from __future__ import annotations

import datetime as dt
import sys
from typing import TYPE_CHECKING, Any

import click

from apsis import present

from . import fmt
from .common import UserError
from .connect import call, get_now
from .exitcodes import ExitStatus
from .fuzzy import job_matches_pattern
from .parse import (
    iso,
    parse_api_time,
    parse_args,
    parse_run_id,
    parse_state,
    parse_time,
)
from .resolve import resolve_job, resolve_jobs

if TYPE_CHECKING:
    from apsis.client import Client

# A Rich Table costs ~0.4 ms a row: beyond this many rows, stream plain lines instead.
MAX_TABLE_ROWS = 300
PAGE_SIZE = 1000


def _echo(line: str) -> None:
    click.echo(line)


def _isatty() -> bool:
    """A table for people: on a terminal, or when colour is asked for (`less -R`)."""
    return sys.stdout.isatty() or fmt.color_enabled()


# ---------------------------------------------------------------- jobs

def _job_params(job: dict[str, Any]) -> list[str]:
    params = job.get("params") or []
    return [params] if isinstance(params, str) else list(params)


# Asking each job's schedule costs a request per job: only for short listings.
MAX_SCHEDULE_LOOKUPS = 100


def jobs(obj: dict[str, Any], pattern: str | None, labels: tuple[str, ...], as_json: bool,
         utc: bool) -> None:
    async def fetch(client: Client) -> tuple[list[dict[str, Any]], dict[str, str]]:
        found = await client.jobs(label=labels[0] if len(labels) == 1 else None)
        found = [j for j in found
                 if all(label in present.job_labels(j) for label in labels)
                 and (not pattern or job_matches_pattern(pattern, j.get("job_id", "")))]
        return found, await _next_runs(client, found)

    found, upcoming = call(obj, fetch)
    found.sort(key=lambda j: j.get("job_id", ""))
    if as_json:
        fmt_json([{**j, "next_run": upcoming.get(j["job_id"])} for j in found])
        return
    rows = [[j.get("job_id", ""), ", ".join(_job_params(j)), ", ".join(present.job_labels(j)),
             fmt.format_time(upcoming.get(j.get("job_id", "")), utc)] for j in found]
    _print_rows(["job", "params", "labels", "next run"], rows)
    if not found:
        click.echo(f"no jobs match {pattern!r}" if pattern else "no jobs", err=True)


async def _next_runs(client: Client, found: list[dict[str, Any]]) -> dict[str, str]:
    """job id → the time of its next run: its earliest scheduled run, else what its
    schedule says (asked per job, and only for a short listing)."""
    wanted = {j["job_id"] for j in found}
    upcoming: dict[str, str] = {}
    earliest: dict[str, dt.datetime] = {}
    async for run in client.iter_runs(states=["scheduled"]):
        job_id = run.get("job_id") or ""
        text = (run.get("times") or {}).get("schedule")
        when = parse_api_time(text)
        if job_id in wanted and text and when and (job_id not in earliest or when < earliest[job_id]):
            earliest[job_id], upcoming[job_id] = when, text
    rest = [j["job_id"] for j in found if j["job_id"] not in upcoming and j.get("schedule")]
    if len(rest) <= MAX_SCHEDULE_LOOKUPS:
        import asyncio

        answers = await asyncio.gather(*(client.job_schedule(job_id, limit=1) for job_id in rest))
        for job_id, items in zip(rest, answers):
            if items and items[0].get("time"):
                upcoming[job_id] = items[0]["time"]
    return upcoming


def fmt_json(value: Any) -> None:
    click.echo(fmt.dumps(value))


def _print_rows(header: list[str], rows: list[list[str]]) -> None:
    """A small table: Rich on a terminal (coloured header), aligned plain text otherwise."""
    if _isatty() and len(rows) <= MAX_TABLE_ROWS:
        from rich.table import Table

        console = fmt.make_console()
        table = Table(box=None, pad_edge=False, show_edge=False,
                      header_style="bold" if fmt.color_enabled() else "")
        for name in header:
            table.add_column(name, overflow="fold")
        for row in rows:
            table.add_row(*row)
        console.print(table)
        return
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    if _isatty():
        _echo(fmt.plain_line(header, widths))
    for row in rows:
        _echo(fmt.plain_line(row, widths))


def job(obj: dict[str, Any], job_id: str, next_n: int, as_json: bool, utc: bool) -> None:
    async def fetch(client: Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        found = await resolve_job(client, job_id)
        upcoming = (await client.job_schedule(found["job_id"], limit=next_n)) if next_n else []
        return found, upcoming

    found, upcoming = call(obj, fetch)
    if as_json:
        fmt_json({**found, "next_runs": upcoming})
        return
    console = fmt.make_console()
    color = fmt.color_enabled()
    title = found.get("job_id", job_id)
    console.print(f"[bold]{title}[/bold]" if color else title, markup=color)
    source = found.get("source")
    if isinstance(source, str) and source.strip():
        text = source  # the job file as written, comments included
    else:  # an inline job, or an older daemon: the parsed definition
        import yaml

        definition = {k: v for k, v in found.items()
                      if k not in ("job_id", "source") and v not in (None, [], {})}
        text = yaml.safe_dump(definition, sort_keys=False, allow_unicode=True, width=96)
    if color:
        from rich.syntax import Syntax

        console.print(Syntax(text.rstrip(), "yaml", theme="ansi_dark", background_color="default"))
    else:
        click.echo(text.rstrip())
    if next_n:
        click.echo("")
        click.echo("next runs:" if upcoming else "next runs: none scheduled")
        for item in upcoming:
            when = fmt.format_time(item.get("time") or item.get("schedule"), utc, compact=False)
            click.echo(f"  {when}  {fmt.format_args(item.get('args'))}".rstrip())


# ---------------------------------------------------------------- runs

DEFAULT_UNTIL = "+1h"


def _query(client_job_id: str | None, states: list[str], labels: tuple[str, ...],
           args: dict[str, str], since: str | None, until: str | None) -> dict[str, Any]:
    return {"job_id": client_job_id, "states": states or None, "labels": list(labels) or None,
            "args": args or None, "since": since, "until": until}


def _api(query: dict[str, Any]) -> dict[str, Any]:
    """The runs query as the API takes it: a folder's jobs as repeated job ids."""
    jobs = query.get("jobs")
    return {k: v for k, v in query.items() if k != "jobs"} | (
        {"job_id": sorted(jobs)} if jobs else {})


async def _page(client: Client, query: dict[str, Any], limit: int,
                summary: bool = False) -> dict[str, Any]:
    """The newest `limit` runs matching `query`, in one request (a folder's too)."""
    return await client.runs(**_api(query), limit=limit, summary=summary)


def runs(obj: dict[str, Any], *, arg_filters: tuple[str, ...], job_id: str | None,
         states: tuple[str, ...], labels: tuple[str, ...], since: str | None,
         until: str | None, show_times: bool, limit: int, all_runs: bool, follow: bool,
         as_json: bool, utc: bool) -> None:
    terms = [a for a in arg_filters if "=" not in a]
    args = parse_args([a for a in arg_filters if "=" in a])
    if len(terms) + bool(job_id) > 1:
        raise UserError("name one job or folder", "apsis runs ops/ (a folder), apsis runs -j mar/lo")
    job_term = job_id or (terms[0] if terms else None)
    wanted_states = sorted({state for s in states for state in parse_state(s)})
    if since is None and until is None and not all_runs:
        # Runs exist a whole schedule horizon ahead; "newest" means up to the near future,
        # or a day of a five-minute job would fill the page.  --all means all of them.
        until = DEFAULT_UNTIL
    since_iso = iso(parse_time(since, "--since", utc=utc)) if since else None
    until_iso = iso(parse_time(until, "--until", utc=utc)) if until else None
    if follow and all_runs:
        raise UserError("--follow and --all do not go together", "use --follow with --limit N")
    if not (follow or all_runs or job_term):
        # One page: one plain GET, no event loop (the common `apsis runs`).
        from apsis.client import runs_params

        query = _query(None, wanted_states, labels, args, since_iso, until_iso)
        # A table needs only the summary; --json gives the runs whole.
        page = get_now(obj, "/runs", runs_params(**query, limit=limit, summary=not as_json))
        _print_runs(page.get("runs") or [], show_times, as_json, utc)
        return

    async def main(client: Client) -> None:
        ids = await resolve_jobs(client, job_term) if job_term else []
        query = _query(ids[0] if len(ids) == 1 else None, wanted_states, labels, args,
                       since_iso, until_iso)
        query["jobs"] = frozenset(ids) if len(ids) > 1 else None
        if follow:
            await _follow_runs(client, query, limit, show_times, as_json, utc)
        elif all_runs:
            await _all_runs(client, query, show_times, as_json, utc)
        else:
            page = await _page(client, query, limit)
            _print_runs(page.get("runs") or [], show_times, as_json, utc)

    call(obj, main)


def _print_runs(found: list[dict[str, Any]], show_times: bool, as_json: bool, utc: bool) -> None:
    """A page of runs (newest first from the API) shown newest last, near the prompt."""
    if as_json:
        fmt_json(found)
        return
    chronological = list(reversed(found))
    if _isatty() and len(found) <= MAX_TABLE_ROWS:
        console = fmt.make_console()
        console.print(fmt.run_table(chronological, times=show_times, utc=utc,
                                    color=fmt.color_enabled()))
        if not found:
            click.echo("no runs", err=True)
        return
    now = dt.datetime.now(dt.UTC)
    rows = [fmt.run_row(r, times=show_times, utc=utc, now=now) for r in chronological]
    header = list(fmt.columns(show_times))
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
    if _isatty():
        _echo(fmt.plain_line(header, widths))
    for row in rows:
        _echo(fmt.plain_line(row, widths))


async def _all_runs(client: Client, query: dict[str, Any], show_times: bool, as_json: bool,
                    utc: bool) -> None:
    """Every matching run, newest first, streamed page by page: never one huge table."""
    header = list(fmt.columns(show_times))
    widths: list[int] | None = None
    first = True
    batch: list[dict[str, Any]] = []
    if as_json:
        sys.stdout.write("[")
    async for run in client.iter_runs(**_api(query), page_size=PAGE_SIZE):
        if as_json:
            sys.stdout.write(("\n" if first else ",\n") + fmt.dumps(run))
            first = False
            continue
        batch.append(run)
        if len(batch) >= PAGE_SIZE:
            widths = _flush_lines(batch, header, widths, show_times, utc)
            batch = []
    if as_json:
        sys.stdout.write("\n]\n")
        sys.stdout.flush()
        return
    if batch or widths is None:
        _flush_lines(batch, header, widths, show_times, utc)


def _flush_lines(batch: list[dict[str, Any]], header: list[str], widths: list[int] | None,
                 show_times: bool, utc: bool) -> list[int]:
    now = dt.datetime.now(dt.UTC)
    rows = [fmt.run_row(r, times=show_times, utc=utc, now=now) for r in batch]
    if widths is None:  # the first page sets the column widths for all
        widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(header)]
        if _isatty():
            _echo(fmt.plain_line(header, widths))
    for row in rows:
        _echo(fmt.plain_line(row, widths))
    return widths


def _merge(old: dict[str, Any] | None, new: dict[str, Any]) -> dict[str, Any]:
    merged = {**(old or {}), **new}
    if old and isinstance(old.get("times"), dict):
        merged["times"] = {**old["times"], **(new.get("times") or {})}
    return merged


def _matches(run: dict[str, Any], query: dict[str, Any]) -> bool:
    """Client-side filtering of live updates, mirroring the API's query."""
    if query["job_id"] and run.get("job_id") != query["job_id"]:
        return False
    if query["jobs"] and run.get("job_id") not in query["jobs"]:
        return False
    if query["states"] and run.get("state") not in query["states"]:
        return False
    run_args = run.get("args") or {}
    if query["args"] and any(run_args.get(k) != v for k, v in query["args"].items()):
        return False
    if query["labels"] and "labels" in run and not set(query["labels"]) <= set(run["labels"] or []):
        return False
    when = parse_api_time((run.get("times") or {}).get("schedule"))
    since, until = parse_api_time(query["since"]), parse_api_time(query["until"])
    if when and since and when < since:
        return False
    return not (when and until and when >= until)


async def _follow_runs(client: Client, query: dict[str, Any], limit: int, show_times: bool,
                       as_json: bool, utc: bool) -> None:
    """The run table kept live from run_transition events (JSON Lines / lines when piped).

    Events carry run summaries: the first page is asked for as summaries too, so that
    every line of `--json` has one shape."""
    page = await _page(client, query, limit, summary=True)
    seq = page.get("seq")
    rows: dict[str, dict[str, Any]] = {r["run_id"]: r for r in reversed(page.get("runs") or [])}
    live = _isatty() and not as_json
    now = dt.datetime.now(dt.UTC)
    events = client.events(since=seq, types=["run_transition"], job_id=query["job_id"])
    if not live:
        # One line per run, then one per change; widths from the first rows (and at
        # least wide enough for every state) keep the columns straight.
        header = list(fmt.columns(show_times))
        first = [fmt.run_row(r, times=show_times, utc=utc, now=now) for r in rows.values()]
        widths = [max([len(h)] + [len(r[i]) for r in first]) for i, h in enumerate(header)]
        widths[0], widths[1] = max(widths[0], 6), max(widths[1], 9)

        from apsis.model.run import SUMMARY_KEYS

        def emit(run: dict[str, Any]) -> None:
            if as_json:  # the keys of an event's summary, whatever the first page had
                _echo(fmt.dumps({key: run.get(key) for key in SUMMARY_KEYS}))
            else:
                cells = fmt.run_row(run, times=show_times, utc=utc)
                for i, cell in enumerate(cells[:-1]):
                    widths[i] = max(widths[i], len(cell))
                _echo(fmt.plain_line(cells, widths))
            sys.stdout.flush()

        for run in rows.values():
            emit(run)
        async for event in events:
            changed = _event_run(event, rows)
            if changed is None:
                continue
            if _matches(changed, query):
                rows[changed["run_id"]] = changed
                emit(changed)
            else:
                rows.pop(changed["run_id"], None)
        return

    from rich.live import Live

    console = fmt.make_console()
    color = fmt.color_enabled()

    def render() -> Any:
        shown = list(rows.values())[-limit:]
        return fmt.run_table(shown, times=show_times, utc=utc, color=color)

    with Live(get_renderable=render, console=console, refresh_per_second=2,
              auto_refresh=True, transient=False, redirect_stderr=False):
        async for event in events:
            changed = _event_run(event, rows)
            if changed is None:
                continue
            rows.pop(changed["run_id"], None)  # re-inserted: the most recently changed last
            if _matches(changed, query):
                rows[changed["run_id"]] = changed
                _trim(rows, limit)


def _trim(rows: dict[str, Any], limit: int) -> None:
    while len(rows) > limit:
        rows.pop(next(iter(rows)))


def _event_run(event: dict[str, Any], rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    if event.get("type") == "reset":
        return None
    summary = event.get("run")
    if not isinstance(summary, dict) or "run_id" not in summary:
        return None
    run = _merge(rows.get(summary["run_id"]), summary)
    if event.get("to"):
        run["state"] = event["to"]
    return run


# ---------------------------------------------------------------- show, log

def show(obj: dict[str, Any], run_id: str, as_json: bool, utc: bool) -> None:
    rid = parse_run_id(run_id)

    async def fetch(client: Client) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        run = await client.run(rid)
        return run, ([] if as_json else await client.run_log(rid))

    run, entries = call(obj, fetch)
    if as_json:
        fmt_json(run)
        return
    _print_run(run, entries, utc)


def _print_run(run: dict[str, Any], entries: list[dict[str, Any]], utc: bool) -> None:
    """Aligned `name  value` lines; plain text, so pipes get no padding or escapes."""
    color = fmt.color_enabled()
    lines: list[tuple[str, str]] = []

    def add(name: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            lines.append((name, str(value)))

    state = run.get("state", "")
    detail = []
    if run.get("exit_code") is not None:
        detail.append(f"exit code {run['exit_code']}")
    if run.get("signal"):
        detail.append(f"signal {run['signal']}")
    add("run", run.get("run_id"))
    add("job", run.get("job_id"))
    add("args", fmt.format_args(run.get("args")))
    add("state", state + (f" ({', '.join(detail)})" if detail else ""))
    add("message", run.get("message"))
    add("labels", ", ".join(run.get("labels") or []))
    if run.get("rerun_of"):
        add("rerun of", f"{run['rerun_of']} (attempt {run.get('attempt') or '?'})")
    if run.get("ad_hoc"):
        add("ad hoc", "yes")
    times = run.get("times") or {}
    order = ["schedule", *present.STATES, "stop"]
    keys = [k for k in order if k in times] + [k for k in times if k not in order]
    for i, key in enumerate(keys):
        add("times" if i == 0 else "", f"{key:<10} {fmt.format_time(times[key], utc, compact=False)}")
    elapsed = fmt.run_elapsed(run)
    if elapsed is not None:
        add("elapsed", present.format_elapsed(elapsed))
    add("program", _program_line(run.get("program")))
    for i, cond in enumerate(run.get("conditions") or []):
        add("conditions" if i == 0 else "", _compact(cond))
    for i, action in enumerate(run.get("actions") or []):
        add("actions" if i == 0 else "", _compact(action))
    for i, out in enumerate(run.get("outputs") or []):
        add("outputs" if i == 0 else "", f"{out.get('output_id')} ({out.get('length', 0)} bytes)")
    width = max(len(name) for name, _ in lines)
    for name, value in lines:
        label = name.ljust(width)
        if color:
            label = click.style(label, bold=True)
            if name == "state":
                value = fmt.click_state(value, state)
        click.echo(f"{label}  {value}")
    if entries:
        click.echo("")
        click.echo(click.style("log", bold=True) if color else "log")
        for entry in entries:
            click.echo("  " + _log_line(entry, utc))


# What a program has unless the job says otherwise: not worth a place on its line.
_PROGRAM_DEFAULTS = {"stop": {"signal": "SIGTERM", "grace_period": 60.0}, "outputs": "combined"}


def _program_line(program: Any) -> str:
    """`shell: df -h /`, `program: sleep 30 timeout=…`: the command as a person reads it."""
    if not isinstance(program, dict):
        return _compact(program)
    import shlex

    rest = {k: v for k, v in program.items() if _PROGRAM_DEFAULTS.get(k, object()) != v}
    kind = rest.pop("type", "?")
    if isinstance(rest.get("command"), str):
        head = rest.pop("command")
    elif isinstance(rest.get("argv"), list):
        head = shlex.join(str(a) for a in rest.pop("argv"))
    else:
        return _compact(program)
    tail = _fields(rest)
    return f"{kind}: {head}" + (f"  ({tail})" if tail else "")


def _compact(value: Any) -> str:
    """A program, condition or action on one line: `shell: command='…' timeout=…`."""
    if not isinstance(value, dict):
        return "" if value is None else str(value)
    body = _fields({k: v for k, v in value.items() if k != "type"})
    return f"{value.get('type', '?')}: {body}".rstrip(": ").rstrip()


def _fields(values: dict[str, Any]) -> str:
    """`key=value` pairs, strings quoted, empty values left out."""
    return " ".join(f"{k}={fmt.dumps(v) if not isinstance(v, str) else repr(v)}"
                    for k, v in values.items() if v not in (None, [], {}))


def _log_line(entry: dict[str, Any], utc: bool) -> str:
    when = entry.get("time") or entry.get("ts") or entry.get("timestamp")
    text = entry.get("message") or ""
    state = entry.get("state") or entry.get("to")
    if state and state not in text:
        text = f"{state}: {text}" if text else state
    if not text:
        text = fmt.dumps({k: v for k, v in entry.items() if k not in ("time", "ts")})
    return f"{fmt.format_time(when, utc, compact=False)}  {text}" if when else text


def log(obj: dict[str, Any], run_id: str, follow: bool, as_json: bool, utc: bool) -> None:
    rid = parse_run_id(run_id)

    printed: set[str] = set()

    def emit(entry: dict[str, Any]) -> None:
        # The replay after `seq` repeats entries the GET already returned: print once.
        key = fmt.dumps(entry)
        if key in printed:
            return
        printed.add(key)
        click.echo(key if as_json else _log_line(entry, utc))
        sys.stdout.flush()

    async def main(client: Client) -> None:
        seq = (await client.runs(limit=1)).get("seq") if follow else None
        run = await client.run(rid)
        entries = await client.run_log(rid)
        if as_json and not follow:
            fmt_json(entries)
            return
        for entry in entries:
            emit(entry)
        if not follow or run.get("state") in present.FINISHED_STATES:
            return
        async for event in client.events(since=seq, run_id=rid,
                                         types=["run_log", "run_transition"]):
            if event.get("type") == "run_log":
                emit(event.get("entry") or {})
            elif event.get("type") == "run_transition" and event.get("to") in present.FINISHED_STATES:
                await _drain_log(client, rid, event.get("seq"), emit)
                return

    call(obj, main)


async def _drain_log(client: Client, rid: str, seq: int | None, emit: Any) -> None:
    """The final transition's log entries may come just after it: a short grace."""
    import asyncio

    try:
        async with asyncio.timeout(0.5):
            async for event in client.events(since=seq, run_id=rid, types=["run_log"]):
                emit(event.get("entry") or {})
    except TimeoutError:
        pass


# ---------------------------------------------------------------- events, tui

def events(obj: dict[str, Any], since: int | None, types: tuple[str, ...], run_id: str | None,
           job_id: str | None) -> None:
    from apsis.model.event_types import EVENT_TYPES

    rid = parse_run_id(run_id) if run_id else None
    unknown = [t for t in types if t not in EVENT_TYPES]
    if unknown:
        # The daemon filters by whatever it is given: a typo would wait forever for nothing.
        raise UserError(f"unknown event type {unknown[0]!r}", "types: " + ", ".join(EVENT_TYPES))

    async def main(client: Client) -> None:
        from .common import follow_while_read

        nonlocal job_id
        if job_id:  # abbreviations as in `runs -j`; an unknown job is an error, not silence
            job_id = (await resolve_job(client, job_id))["job_id"]
        if rid:
            await client.run(rid)  # an unknown run: exit 2 now, not a silent stream

        def write(event: dict[str, Any]) -> None:
            sys.stdout.write(fmt.dumps(event) + "\n")
            sys.stdout.flush()

        await follow_while_read(client.events(since=since, run_id=rid, job_id=job_id,
                                              types=list(types) or None), write)

    call(obj, main)


def tui(obj: dict[str, Any], *, web: bool = False, port: int = 8000) -> None:
    """The TUI in this terminal, or (`web`) served to a browser on 127.0.0.1:PORT."""
    # By name, through importlib: apsis_cli must not depend on apsis_tui at import time
    # (the import-linter contract in pyproject.toml), and the TUI is optional here.
    import importlib

    if web:
        try:
            serve_web = importlib.import_module("apsis_tui.web").serve_web
        except ImportError as exc:
            raise UserError(f"`apsis tui --web` needs textual-serve ({exc})",
                            "pip install 'apsis[web]'", ExitStatus.USAGE) from None
        try:
            serve_web(obj["url"], obj.get("token"), port)
        except OSError as exc:
            raise UserError(f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}",
                            "choose another with --port N", ExitStatus.USAGE) from None
        raise click.exceptions.Exit(ExitStatus.INTERRUPTED)  # only Ctrl-C/SIGTERM end it
    try:
        app = importlib.import_module("apsis_tui.app")
        run_tui = app.run_tui
    except (ImportError, AttributeError) as exc:
        raise UserError(f"the TUI is not available: {exc}",
                        "install Apsis with its TUI (textual), or use `apsis runs --follow`",
                        ExitStatus.FAILURE) from None
    run_tui(obj["url"], obj.get("token"))

"""`apsis`: the client.  Only Click is imported here; commands import what they use.

Each command below is a thin Click declaration whose body lives in a module imported
inside the function (`cmd_query`, `cmd_create`, `cmd_wait`, `cmd_ops`), so that
`apsis --help` and `apsis wait` load neither Rich, httpx nor the server until needed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from .common import ApsisGroup, run_main

F = Callable[..., Any]

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ---------------------------------------------------------------- completion
# Shell completion may ask the daemon (with a short timeout); it fails silently.

def _complete_job(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from .complete import complete_job_ids

    return complete_job_ids(ctx, incomplete)


def _complete_run(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    from .complete import complete_run_ids

    return complete_run_ids(ctx, incomplete)


def _complete_state(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[str]:
    from apsis.model.states import State

    return [s.value for s in State if s.value.startswith(incomplete.lower())]


# ---------------------------------------------------------------- shared options

def output_options(*, utc: bool = True, follow: bool = False) -> Callable[[F], F]:
    """`--json` (and `--utc`) for every listing and show command, declared once."""

    def decorate(fn: F) -> F:
        fn = click.option("--json", "as_json", is_flag=True,
                          help="Print one JSON document (JSON Lines with --follow) instead of "
                               "text." if follow else "Print one JSON document instead of "
                               "text.")(fn)
        if utc:
            fn = click.option("--utc", is_flag=True,
                              help="Show and read times in UTC, not the local zone.")(fn)
        return fn

    return decorate


def wait_options(fn: F) -> F:
    """`--wait` / `--output` for the commands that create runs."""
    fn = click.option("--output", "show_output", is_flag=True,
                      help="Stream the runs' output while waiting (implies --wait).")(fn)
    fn = click.option("--wait", "wait", is_flag=True,
                      help="Wait for the runs to finish; exit 0 success, 1 failure, 3 error, "
                           "4 skipped.")(fn)
    fn = click.option("--timeout", metavar="DUR", default=None,
                      help="With --wait: give up after DUR (exit 124).")(fn)
    fn = click.option("--follow-retries", is_flag=True,
                      help="When a run fails and its job retries it, wait for the last attempt "
                           "and exit by it (implies --wait).")(fn)
    return fn


# ---------------------------------------------------------------- the group

@click.group(cls=ApsisGroup, context_settings=CONTEXT)
@click.option("--url", envvar="APSIS_URL", default=None, metavar="URL[,URL...]",
              help="The daemon's URL, or the URLs of daemons sharing one database, comma "
                   "separated: the first that answers is used (env APSIS_URL; default: the "
                   "daemon `make run` started, else http://127.0.0.1:5000).")
@click.option("--token", envvar="APSIS_TOKEN", default=None, help="API token (env APSIS_TOKEN).")
@click.option("--retry-for", "retry_for", envvar="APSIS_RETRY_FOR", metavar="DUR", default="30s",
              show_default=True,
              help="Keep retrying an unreachable daemon this long, then exit 69.")
@click.option("--color", type=click.Choice(["auto", "always", "never"]), default="auto",
              show_default=True,
              help="Colour: auto is on a terminal, unless NO_COLOR is set, or always with "
                   "FORCE_COLOR or CLICOLOR_FORCE set.")
@click.option("--no-pager", is_flag=True,
              help="Never page: show, job, log and runs taller than the terminal go through "
                   "$PAGER (less -FRX) otherwise.")
@click.version_option(package_name="apsis", prog_name="apsis", message="%(prog)s %(version)s")
@click.pass_context
def cli(ctx: click.Context, url: str | None, token: str | None, retry_for: str, color: str,
        no_pager: bool) -> None:
    """Talk to a running Apsis daemon: jobs, runs, output, waiting, the TUI.

    \b
    Examples:
      apsis runs --times                        # the newest 100 runs
      apsis run market/load-prices date=2026-12-01 country=US --wait --output
      apsis wait r12345 r12346 --timeout 2h     # exit 0 only if all succeeded
      apsis output r12345 --follow              # live output, ANSI colours kept
      apsis runs -s failure --since -1d --json | jq '.[].run_id'

    \b
    Exit codes (wait, run/adhoc/output --wait): 0 success, 1 failure, 3 error,
    4 skipped, 124 timeout, 69 daemon unreachable, 2 usage error or unknown run/job,
    130 interrupted.
    """
    from apsis.client import find_url

    from . import common
    from .parse import parse_duration

    common.COLOR, common.NO_PAGER = color, no_pager
    ctx.obj = {"url": (url or find_url()).rstrip("/"), "token": token,
               "retry_for": parse_duration(retry_for, "--retry-for")}


# ---------------------------------------------------------------- jobs

@cli.command("jobs", context_settings=CONTEXT)
@click.argument("pattern", required=False)
@click.option("-l", "--label", "labels", multiple=True, metavar="LABEL",
              help="Only jobs with this label (repeatable: all must match).")
@output_options()
@click.pass_obj
def jobs_cmd(obj: dict, pattern: str | None, labels: tuple[str, ...], as_json: bool,
             utc: bool) -> None:
    """List jobs: id, params, labels and next scheduled run.

    PATTERN is a glob (`market/*`), a substring, or a fuzzy prefix (`mar/lo`).

    \b
    Examples:
      apsis jobs
      apsis jobs 'market/*' --label daily
      apsis jobs --json | jq -r '.[].job_id'
    """
    from .cmd_query import jobs

    jobs(obj, pattern, labels, as_json, utc)


@cli.command("job", context_settings=CONTEXT)
@click.argument("job_id", metavar="JOB", shell_complete=_complete_job)
@click.option("-n", "--limit", "--next", "next_n", type=click.IntRange(0), default=5,
              show_default=True, metavar="N",
              help="How many upcoming scheduled times to show.")
@output_options()
@click.pass_obj
def job_cmd(obj: dict, job_id: str, next_n: int, as_json: bool, utc: bool) -> None:
    """Show a job's definition and its next N scheduled times.

    JOB may be an unambiguous fuzzy prefix: `mar/lo` for `market/load-prices`.

    \b
    Examples:
      apsis job market/load-prices
      apsis job mar/lo --next 10 --utc
    """
    from .cmd_query import job
    from .common import paged

    with paged():
        job(obj, job_id, next_n, as_json, utc)


# ---------------------------------------------------------------- runs

@cli.command("runs", context_settings=CONTEXT)
@click.argument("arg_filters", nargs=-1, metavar="[JOB|FOLDER/] [ARG=VAL]...")
@click.option("-j", "--job", "job_id", metavar="JOB", shell_complete=_complete_job,
              help="Only runs of this job (fuzzy prefix allowed), or of the jobs in a "
                   "folder (ops/).")
@click.option("-s", "--state", "states", multiple=True, metavar="STATE",
              shell_complete=_complete_state, help="Only runs in this state (repeatable).")
@click.option("-l", "--label", "labels", multiple=True, metavar="LABEL",
              help="Only runs with this label (repeatable).")
@click.option("--since", metavar="TIME", help="Only runs scheduled at or after TIME (-1d: a day ago).")
@click.option("--until", metavar="TIME",
              help="Only runs scheduled before TIME (default, without --since or --all: an "
                   "hour from now, so that future scheduled runs do not fill the page).")
@click.option("-t", "--times", "show_times", is_flag=True,
              help="Add schedule, start, end and elapsed columns.")
@click.option("-n", "--limit", type=click.IntRange(1), default=100, show_default=True, metavar="N",
              help="Show the newest N runs.")
@click.option("-a", "--all", "all_runs", is_flag=True, help="Show every matching run, past and future (streamed; no default --until).")
@click.option("-f", "--follow", is_flag=True,
              help="Keep the table live (JSON Lines of changed run summaries with --json).")
@output_options(follow=True)
@click.pass_obj
def runs_cmd(obj: dict, arg_filters: tuple[str, ...], job_id: str | None,
             states: tuple[str, ...], labels: tuple[str, ...], since: str | None,
             until: str | None, show_times: bool, limit: int, all_runs: bool, follow: bool,
             as_json: bool, utc: bool) -> None:
    """List runs, newest last: the newest 100 (--limit) scheduled before an hour from
    now (--until), or with --all every one, scheduled runs far ahead included.

    JOB (like -j) keeps the runs of one job, FOLDER/ (or /FOLDER, as in the TUI)
    those of every job under it.  ARG=VAL filters by the runs' args.  Times (--since, --until) are ISO 8601
    (local time unless --utc or an offset is given), `now`, `+2h` or `-1d`.

    \b
    Examples:
      apsis runs --times
      apsis runs -j mar/lo -s failure -s error --since -7d
      apsis runs country=US date=2026-12-01
      apsis runs --follow --times
      apsis runs --all --json > runs.json
    """
    from .cmd_query import runs
    from .common import paged

    with paged() if not follow else _nothing():
        runs(obj, arg_filters=arg_filters, job_id=job_id, states=states, labels=labels,
             since=since, until=until, show_times=show_times, limit=limit, all_runs=all_runs,
             follow=follow, as_json=as_json, utc=utc)


@cli.command("show", context_settings=CONTEXT)
@click.argument("run_id", metavar="RUN", shell_complete=_complete_run)
@output_options()
@click.pass_obj
def show_cmd(obj: dict, run_id: str, as_json: bool, utc: bool) -> None:
    """Show one run: instance, state, times, program, conditions, actions and log.

    \b
    Examples:
      apsis show r12345
      apsis show r12345 --json | jq .state
    """
    from .cmd_query import show
    from .common import paged

    with paged():
        show(obj, run_id, as_json, utc)


@cli.command("log", context_settings=CONTEXT)
@click.argument("run_id", metavar="RUN", shell_complete=_complete_run)
@click.option("-f", "--follow", is_flag=True, help="Keep printing new entries until the run ends.")
@output_options(follow=True)
@click.pass_obj
def log_cmd(obj: dict, run_id: str, follow: bool, as_json: bool, utc: bool) -> None:
    """Print a run's log: its transitions and messages.

    \b
    Examples:
      apsis log r12345
      apsis log r12345 -f
    """
    from .cmd_query import log
    from .common import paged

    with paged() if not follow else _nothing():
        log(obj, run_id, follow, as_json, utc)


# ---------------------------------------------------------------- creating runs

@cli.command("run", context_settings=CONTEXT)
@click.argument("job_id", metavar="JOB", shell_complete=_complete_job)
@click.argument("args", nargs=-1, metavar="[ARG=VAL]...")
@click.option("--at", "at", metavar="TIME", help="Schedule the run at TIME instead of now.")
@click.option("--count", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="How many runs to create.")
@click.option("--stop", "stop", metavar="TIME", help="Stop the run at TIME.")
@wait_options
@output_options()
@click.pass_obj
def run_cmd(obj: dict, job_id: str, args: tuple[str, ...], at: str | None, count: int,
            stop: str | None, wait: bool, show_output: bool, timeout: str | None,
            follow_retries: bool, as_json: bool, utc: bool) -> None:
    """Create a run of JOB now (or at TIME) and print its id.

    With --wait, wait for it and exit by its final state; --output also streams its
    output to stdout as it runs (the run ids then go to stderr).

    \b
    Examples:
      apsis run market/load-prices date=2026-12-01 country=US
      apsis run mar/lo date=2026-12-01 country=US --wait --output
      apsis run ops/flaky --at +2h
      apsis run ops/flaky --at 2026-12-01T18:00 --stop 2026-12-01T19:00
    """
    from .cmd_create import create_runs

    raise click.exceptions.Exit(create_runs(
        obj, job_id, args, at=at, count=count, stop=stop, wait=wait, show_output=show_output,
        timeout=timeout, as_json=as_json, utc=utc, follow_retries=follow_retries))


@cli.command("schedule", context_settings=CONTEXT)
@click.argument("time", metavar="TIME")
@click.argument("job_id", metavar="JOB", shell_complete=_complete_job)
@click.argument("args", nargs=-1, metavar="[ARG=VAL]...")
@click.option("--count", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="How many runs to create.")
@click.option("--stop", "stop", metavar="TIME", help="Stop the run at TIME.")
@wait_options
@output_options()
@click.pass_obj
def schedule_cmd(obj: dict, time: str, job_id: str, args: tuple[str, ...], count: int,
                 stop: str | None, wait: bool, show_output: bool, timeout: str | None,
                 follow_retries: bool, as_json: bool, utc: bool) -> None:
    """Schedule a run of JOB at TIME (the same as `apsis run JOB --at TIME`).

    \b
    Examples:
      apsis schedule 2026-12-01T09:30 market/load-prices date=2026-12-01 country=US
      apsis schedule +10m ops/flaky
    """
    from .cmd_create import create_runs

    raise click.exceptions.Exit(create_runs(
        obj, job_id, args, at=time, count=count, stop=stop, wait=wait, show_output=show_output,
        timeout=timeout, as_json=as_json, utc=utc, follow_retries=follow_retries))


@cli.command("adhoc", context_settings={**CONTEXT, "allow_interspersed_args": False})
@click.argument("command", nargs=-1, required=True, metavar="[--] CMD [ARG]...")
@click.option("--at", "at", metavar="TIME", help="Run at TIME instead of now.")
@click.option("--shell", is_flag=True, help="Run CMD as one bash command line (a `shell` program).")
@wait_options
@output_options()
@click.pass_obj
def adhoc_cmd(obj: dict, command: tuple[str, ...], at: str | None, shell: bool, wait: bool,
              show_output: bool, timeout: str | None, follow_retries: bool, as_json: bool,
              utc: bool) -> None:
    """Run an ad hoc command (its job is labelled `ad-hoc`) and print the run id.

    The command runs on the daemon's host as an argv, without a shell, unless
    --shell.  Options go before CMD; use `--` if CMD itself starts with a dash.

    \b
    Examples:
      apsis adhoc -- make -C /srv/app deploy
      apsis adhoc --wait --output -- ls -l /tmp
      apsis adhoc --shell --at +1h -- 'du -sh /var/log | mail -s logs ops'
    """
    from .cmd_create import create_adhoc

    raise click.exceptions.Exit(create_adhoc(
        obj, command, at=at, shell=shell, wait=wait, show_output=show_output, timeout=timeout,
        as_json=as_json, utc=utc, follow_retries=follow_retries))


@cli.command("backfill", context_settings=CONTEXT)
@click.argument("job_id", metavar="JOB", shell_complete=_complete_job)
@click.argument("args", nargs=-1, metavar="[ARG=VAL]...")
@click.option("--from", "from_", metavar="TIME", required=True, help="Start of the window.")
@click.option("--to", "to", metavar="TIME", required=True, help="End of the window (excluded).")
@click.option("--dry-run", is_flag=True, help="Print the runs it would create; create none.")
@click.option("--max-parallel", type=click.IntRange(1), default=None, metavar="N",
              help="Create the runs in waves of N, waiting for each wave to finish.")
@click.option("--wait", is_flag=True, help="Wait for all the runs; exit by their final states.")
@output_options()
@click.pass_obj
def backfill_cmd(obj: dict, job_id: str, args: tuple[str, ...], from_: str, to: str,
                 dry_run: bool, max_parallel: int | None, wait: bool, as_json: bool,
                 utc: bool) -> None:
    """Create the runs JOB's schedules would have created in [--from, --to).

    ARG=VAL keeps only the scheduled runs with those args.  Each run gets its
    scheduled time and starts now; the ids are printed as they are created.

    \b
    Examples:
      apsis backfill market/load-prices --from 2026-11-01 --to 2026-12-01 --dry-run
      apsis backfill mar/lo country=US --from -7d --to now --max-parallel 2
    """
    from .cmd_create import backfill

    raise click.exceptions.Exit(backfill(
        obj, job_id, args, from_=from_, to=to, dry_run=dry_run, max_parallel=max_parallel,
        wait=wait, as_json=as_json, utc=utc))


# ---------------------------------------------------------------- waiting and output

@cli.command("wait", context_settings=CONTEXT)
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...", shell_complete=_complete_run)
@click.option("--timeout", metavar="DUR", help="Give up after DUR (exit 124): 90s, 10m, 2h.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing; only the exit code tells.")
@click.option("--follow-retries", is_flag=True,
              help="When a run fails and its job retries it, wait for the last attempt.")
@output_options(utc=False)
@click.pass_obj
def wait_cmd(obj: dict, run_ids: tuple[str, ...], timeout: str | None, quiet: bool,
             follow_retries: bool, as_json: bool) -> None:
    """Block until the runs finish; the exit code says how they ended.

    Exit 0 if all succeeded, else the code of the first run (in argument order) that
    did not: 1 failure, 3 error, 4 skipped.  124 when --timeout expires, 69 when the
    daemon stays unreachable, 2 for an unknown run.  Follows the event stream and
    survives a daemon restart; a run that has already finished returns at once.
    On a terminal, a status line shows what is still running; a failed run's
    scheduled retry is named (`--follow-retries` waits for the last attempt).

    \b
    Examples:
      apsis wait r12345
      apsis wait r12345 r12346 --timeout 2h || echo "failed: $?"
      apsis wait r12345 --json | jq .[0].state
    """
    from .cmd_wait import wait

    raise click.exceptions.Exit(wait(obj, run_ids, timeout, quiet, as_json, follow_retries))


@cli.command("output", context_settings=CONTEXT)
@click.argument("run_id", metavar="RUN", shell_complete=_complete_run)
@click.option("--output-id", metavar="ID", default=None,
              help="Which output: output (default), or stdout/stderr when split.")
@click.option("-f", "--follow", is_flag=True,
              help="Stream the output live until the run ends; exit like `wait`.")
@click.option("--wait", is_flag=True, help="Wait for the run to finish, then print it all.")
@click.option("--tail", type=click.IntRange(0), metavar="N", default=None,
              help="Only the last N lines (then follow, with -f).")
@click.option("--timeout", metavar="DUR", help="With -f/--wait: give up after DUR (exit 124).")
@click.pass_obj
def output_cmd(obj: dict, run_id: str, output_id: str | None, follow: bool, wait: bool,
               tail: int | None, timeout: str | None) -> None:
    """Print a run's output, byte for byte as stored (ANSI colours kept).

    \b
    Examples:
      apsis output r12345
      apsis output r12345 --tail 20 -f
      apsis output r12345 --wait > result.csv
      apsis output r12345 --output-id stderr
    """
    from .cmd_wait import output

    raise click.exceptions.Exit(output(obj, run_id, output_id, follow, wait, tail, timeout))


# ---------------------------------------------------------------- operations

def _operation(name: str, summary: str, example: str) -> None:
    @cli.command(name, context_settings=CONTEXT,
                 help=f"{summary}\n\n\b\nExamples:\n  {example}")
    @click.argument("run_ids", nargs=-1, required=True, metavar="RUN...",
                    shell_complete=_complete_run)
    @output_options(utc=False)
    @click.pass_obj
    def command(obj: dict, run_ids: tuple[str, ...], as_json: bool) -> None:
        from .cmd_ops import operate

        raise click.exceptions.Exit(operate(obj, name, run_ids, as_json))


_operation("skip", "Skip scheduled or waiting runs.", "apsis skip r12345 r12346")
_operation("start", "Start scheduled or waiting runs now, ignoring their conditions.",
           "apsis start r12345")
_operation("stop", "Stop running runs (the stop signal, then SIGKILL after the grace period).",
           "apsis stop r12345")
_operation("rerun", "Create a new run of each run's instance; prints the new ids.",
           "apsis rerun r12345\n  apsis rerun r12345 --json | jq -r .[].run_id")


@cli.command("signal", context_settings=CONTEXT)
@click.argument("sig", metavar="SIG")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...", shell_complete=_complete_run)
@output_options(utc=False)
@click.pass_obj
def signal_cmd(obj: dict, sig: str, run_ids: tuple[str, ...], as_json: bool) -> None:
    """Send a signal to running runs' processes.

    \b
    Examples:
      apsis signal HUP r12345
      apsis signal SIGUSR1 r12345 r12346
    """
    from .cmd_ops import operate

    raise click.exceptions.Exit(operate(obj, "signal", run_ids, as_json, arg=sig))


@cli.command("mark", context_settings=CONTEXT)
@click.argument("state", metavar="STATE",
                type=click.Choice(["success", "failure", "error", "skipped"], case_sensitive=False))
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN...", shell_complete=_complete_run)
@output_options(utc=False)
@click.pass_obj
def mark_cmd(obj: dict, state: str, run_ids: tuple[str, ...], as_json: bool) -> None:
    """Move finished runs to another finished state.

    \b
    Examples:
      apsis mark success r12345
      apsis mark skipped r12345 r12346
    """
    from .cmd_ops import operate

    raise click.exceptions.Exit(operate(obj, "mark", run_ids, as_json, arg=state.lower()))


# ---------------------------------------------------------------- events, tui

@cli.command("events", context_settings=CONTEXT)
@click.option("--since", type=click.IntRange(0), metavar="SEQ", default=None,
              help="Replay events after SEQ, then go live (default: from now).")
@click.option("--type", "types", multiple=True, metavar="TYPE",
              help="Only events of this type (repeatable): run_transition, run_log, ...")
@click.option("-t", "old_types", multiple=True, metavar="TYPE", hidden=True)  # was --type's
@click.option("-r", "--run", "run_id", metavar="RUN", shell_complete=_complete_run,
              help="Only events of this run.")
@click.option("-j", "--job", "job_id", metavar="JOB", shell_complete=_complete_job,
              help="Only events of this job (fuzzy prefix allowed).")
@click.pass_obj
def events_cmd(obj: dict, since: int | None, types: tuple[str, ...],
               old_types: tuple[str, ...], run_id: str | None, job_id: str | None) -> None:
    """Print the raw event stream as JSON Lines, until interrupted.

    \b
    Examples:
      apsis events
      apsis events --since 0 --type run_transition | jq -c '[.seq, .run.run_id, .to]'
    """
    from .cmd_query import events

    events(obj, since, types + old_types, run_id, job_id)


@cli.command("tui", context_settings=CONTEXT)
@click.option("--web", is_flag=True,
              help="Serve the TUI to a browser instead (needs `pip install 'apsis[web]'`). It "
                   "listens on 127.0.0.1 only: the page acts with your token, so reach it from "
                   "elsewhere through `ssh -L`.")
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="With --web: the loopback port to serve on (default 8000).")
@click.pass_obj
def tui_cmd(obj: dict, web: bool, port: int | None) -> None:
    """Open the full-screen terminal UI, or serve it to a browser with --web.

    \b
    Examples:
      apsis --url http://scheduler:5000 tui
      apsis tui --web --port 8001     # then open http://127.0.0.1:8001
    """
    from .cmd_query import tui

    if port is not None and not web:
        raise click.UsageError("--port is for --web")
    tui(obj, web=web, port=port or 8000)


@cli.command("completion", context_settings=CONTEXT)
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
def completion_cmd(shell: str) -> None:
    """Print the shell code that completes apsis commands, options, job and run ids.

    \b
    Examples:
      eval "$(apsis completion bash)"      # in ~/.bashrc
      eval "$(apsis completion zsh)"       # in ~/.zshrc
      apsis completion fish | source       # in ~/.config/fish/config.fish
    """
    from click.shell_completion import get_completion_class

    complete = get_completion_class(shell)
    assert complete is not None  # the three Click knows
    click.echo(complete(cli, {}, "apsis", "_APSIS_COMPLETE").source())


def _nothing() -> Any:
    import contextlib

    return contextlib.nullcontext()


def main() -> None:
    run_main(cli, "apsis")


if __name__ == "__main__":
    main()


"""`apsisctl`: the daemon's side.  Imports stay inside commands so `--help` is fast."""

from __future__ import annotations

import click

from .common import ApsisGroup, run_main


DEFAULT_URL = "http://127.0.0.1:5000"
DEFAULT_RETRY_FOR = "30s"


@click.group(cls=ApsisGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", metavar="URL[,URL...]", default=None,
              help=f"The daemon's URL, for the commands that talk to one, or the URLs of "
                   f"daemons sharing a database, comma separated (env APSIS_URL; default: the "
                   f"daemon `make run` started, else {DEFAULT_URL}).")
@click.option("--token", default=None, help="API token with the admin role (env APSIS_TOKEN).")
@click.option("--retry-for", "retry_for", metavar="DUR", default=None,
              help=f"Keep retrying an unreachable daemon this long, then exit 69 (env "
                   f"APSIS_RETRY_FOR; default {DEFAULT_RETRY_FOR}).")
@click.version_option(package_name="apsis", prog_name="apsisctl", message="%(prog)s %(version)s")
def cli(url: str | None, token: str | None, retry_for: str | None) -> None:
    """Run and maintain the Apsis daemon, and check job files.

    Global options go before the command, as for `apsis`; the same options after
    the command win.

    \b
    Examples:
      apsisctl check-job jobs/                 # validate a jobs directory
      apsisctl check-job jobs/ --list-runs --from 2026-12-01 --to 2026-12-02
      apsisctl serve --jobs jobs --db apsis.db # run the daemon in the foreground
      apsisctl --url http://sched:5000 sanity
      apsisctl status --config /etc/apsis/apsis.yaml   # which daemon leads
    """


@cli.command("check-job")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True, help="How problems are printed.")
@click.option("--list-runs", is_flag=True,
              help="Print the runs the schedules of the jobs that load (of the files given, "
                   "or the whole directory) would create, as JSON Lines on stdout (problems "
                   "and the summary then go to stderr).")
@click.option("--from", "from_", metavar="TIME", help="Start of --list-runs window (default: now).")
@click.option("--to", "to", metavar="TIME", help="End of --list-runs window (default: a day after --from).")
@click.option("-q", "--quiet", is_flag=True, help="Print problems only, no summary.")
@click.option("--workers", type=click.IntRange(min=1), metavar="N",
              help="Processes that load and check the files (default: one per CPU for big "
                   "directories, one per 1 000 files at most).")
def check_job(paths: tuple[str, ...], fmt: str, list_runs: bool, from_: str | None,
              to: str | None, quiet: bool, workers: int | None) -> None:
    """Validate job files or whole jobs directories, without a daemon.

    Checks the schema, duplicate keys, durations, daytimes, time zones, calendars,
    cron expressions, templates rendered for every schedule's args, params bound by
    every schedule, dependencies and `schedule` actions on existing jobs with
    matching params, dependency cycles and host groups.  A file is checked within its
    jobs directory, its problems alone reported.  Only `.yaml` files not named `.*` are
    jobs (a `.yml` file, or a file given that is no job, gets a warning).  Exits 0 when
    clean, 1 when there are errors (warnings alone do not fail), 2 on a usage error.

    \b
    Examples:
      apsisctl check-job jobs/
      apsisctl check-job jobs/market/load-prices.yaml --format github
      apsisctl check-job jobs/ --list-runs --from 2026-12-01 --to 2026-12-08
    """
    from .check_job import run_check_job

    raise click.exceptions.Exit(run_check_job(paths, fmt, list_runs, from_, to, quiet, workers))


@cli.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="apsis.yaml (default: none, the embedded defaults).")
@click.option("--jobs", type=click.Path(file_okay=False), help="Jobs directory (default: ./jobs).")
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite database, created on first start (default: ./apsis.db), or a postgresql:// URL.")
@click.option("--bind", metavar="ADDR", help="HOST:PORT or unix:PATH (default: 127.0.0.1:5000).")
@click.option("--since", metavar="TIME", help="Catch up missed runs from TIME ('now' skips catch-up).")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback bind without tokens and TLS.")
def serve(config_path: str | None, jobs: str | None, db: str | None, bind: str | None,
          since: str | None, insecure: bool) -> None:
    """Run the daemon in the foreground; SIGTERM or Ctrl-C stop it cleanly.

    \b
    Examples:
      apsisctl serve                           # ./jobs, ./apsis.db, 127.0.0.1:5000
      apsisctl serve --config /etc/apsis.yaml
      apsisctl serve --jobs jobs --db /var/lib/apsis.db --bind unix:/run/apsis.sock
    """
    from .serve import run_serve

    raise click.exceptions.Exit(run_serve(config_path, jobs, db, bind, since, insecure))


@cli.command("schema")
def schema() -> None:
    """Print the JSON Schema of job files (for editors, e.g. yaml-language-server).

    \b
    Example:
      apsisctl schema > .apsis-job.schema.json
    """
    import json

    from apsis.schema import job_schema

    click.echo(json.dumps(job_schema(), indent=2))


def client_options(fn):  # type: ignore[no-untyped-def]
    """--url/--token/--retry-for for the commands that talk to a running daemon."""
    fn = click.option("--retry-for", "retry_for", metavar="DUR", default=None,
                      help=f"Keep retrying an unreachable daemon this long, then exit 69 "
                           f"(env APSIS_RETRY_FOR; default {DEFAULT_RETRY_FOR}).")(fn)
    fn = click.option("--token", default=None,
                      help="API token with the admin role (env APSIS_TOKEN).")(fn)
    fn = click.option("--url", metavar="URL[,URL...]", default=None,
                      help=f"The daemon's URL, or several, comma separated (env APSIS_URL; "
                           f"default {DEFAULT_URL}).")(fn)
    return fn


def db_options(fn):  # type: ignore[no-untyped-def]
    """--db/--config for the commands that open the database directly."""
    fn = click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True),
                      help="apsis.yaml: the database (and archive) it names.")(fn)
    fn = click.option("--db", "db", type=click.Path(dir_okay=False),
                      help="The SQLite database or a postgresql:// URL "
                           "(default: from --config, else ./apsis.db).")(fn)
    return fn


@cli.command("reload")
@click.option("--dry-run", is_flag=True, help="Only report what would change.")
@click.option("--json", "as_json", is_flag=True, help="Print the daemon's answer as JSON.")
@client_options
def reload(dry_run: bool, as_json: bool, url: str | None, token: str | None,
           retry_for: str | None) -> None:
    """Reload the jobs directory in a running daemon; prints added/changed/removed jobs.

    \b
    Examples:
      apsisctl reload --dry-run
      apsisctl reload
    """
    from .ctl_daemon import run_reload

    raise click.exceptions.Exit(run_reload(_client_obj(url, token, retry_for), dry_run, as_json))


@cli.command("sanity")
@click.option("--late", "late", metavar="DUR", default="1m", show_default=True,
              help="A run is late when it starts this long after its schedule time.")
@click.option("--since", metavar="TIME", default="-1d", show_default=True,
              help="How far back to look for runs that started late.")
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@client_options
def sanity(late: str, since: str, as_json: bool, url: str | None, token: str | None,
           retry_for: str | None) -> None:
    """Report what looks wrong in a running daemon; exit 1 if anything does.

    Unscheduled jobs (a schedule due within a day but no scheduled run), scheduled
    runs past their time, running runs whose job is gone or stuck starting or
    stopping, and runs that started late.

    \b
    Examples:
      apsisctl sanity
      apsisctl sanity --late 5m --since -7d --json
    """
    from .ctl_daemon import run_sanity

    raise click.exceptions.Exit(run_sanity(_client_obj(url, token, retry_for), late, since, as_json))


@cli.command("shutdown")
@click.option("--restart", is_flag=True, help="Ask the daemon to start again (exec itself).")
@client_options
def shutdown(restart: bool, url: str | None, token: str | None, retry_for: str | None) -> None:
    """Stop (or restart) a running daemon cleanly.

    \b
    Examples:
      apsisctl shutdown
      apsisctl shutdown --restart
    """
    from .ctl_daemon import run_shutdown

    raise click.exceptions.Exit(run_shutdown(_client_obj(url, token, retry_for), restart))


def _client_obj(url: str | None, token: str | None, retry_for: str | None) -> dict:
    """The daemon to talk to: the command's options, else the global ones (before the
    command), else the environment, else the defaults."""
    import os

    from .parse import parse_duration

    top = click.get_current_context().find_root().params
    if not (url := url or top.get("url") or os.environ.get("APSIS_URL")):
        from apsis.client import find_url

        url = find_url()
    token = token or top.get("token") or os.environ.get("APSIS_TOKEN")
    retry_for = (retry_for or top.get("retry_for") or os.environ.get("APSIS_RETRY_FOR")
                 or DEFAULT_RETRY_FOR)
    return {"url": url.rstrip("/"), "token": token,
            "retry_for": parse_duration(retry_for, "--retry-for")}


@cli.command("status")
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the status as one JSON document.")
@client_options
def status(db: str | None, config_path: str | None, as_json: bool, url: str | None,
           token: str | None, retry_for: str | None) -> None:
    """Show which daemon leads, as the database sees it; exit 1 if none does.

    PostgreSQL: the leader, its epoch and last heartbeat, and every daemon connected
    to the database (read-only: works while daemons run, or after the leader died).
    SQLite: there is one daemon at most; shows which process holds the file, and
    what the daemon at --url answers on /alive.

    \b
    Examples:
      apsisctl status --db postgresql://apsis@db1/apsis
      apsisctl status --config /etc/apsis/apsis.yaml --json
      apsisctl status --db apsis.db --url http://127.0.0.1:5000
    """
    from .ctl_status import run_status

    raise click.exceptions.Exit(run_status(db, config_path, _client_obj(url, token, retry_for),
                                           as_json))


@cli.group("db")
def db() -> None:
    """Maintain the database directly (stop the daemon first for all but check).

    \b
    Examples:
      apsisctl db check --db apsis.db
      apsisctl db archive --older-than 90d --config apsis.yaml
      apsisctl db vacuum --db postgresql://apsis@db1/apsis
      apsisctl db copy --from apsis.db --to postgresql://apsis@db1/apsis
    """


@db.command("migrate")
@db_options
def db_migrate(db: str | None, config_path: str | None) -> None:
    """Create the database, or bring its schema up to date.

    \b
    Example:
      apsisctl db migrate --db apsis.db
    """
    from .ctl_db import run_migrate

    raise click.exceptions.Exit(run_migrate(db, config_path))


@db.command("check")
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print statistics and problems as JSON.")
def db_check(db: str | None, config_path: str | None, as_json: bool) -> None:
    """Check the database's integrity (read-only; safe while the daemon runs); exit 1 on problems.

    \b
    Example:
      apsisctl db check --db apsis.db
    """
    from .ctl_db import run_check

    raise click.exceptions.Exit(run_check(db, config_path, as_json))


@db.command("archive")
@db_options
@click.option("--older-than", "older_than", metavar="DUR", required=True,
              help="Move finished runs scheduled more than DUR ago: 90d, 12w.")
@click.option("--archive", "archive_path", type=click.Path(dir_okay=False),
              help="The archive database (default: from --config, else beside the database).")
@click.option("--chunk", type=click.IntRange(1), default=1000, show_default=True,
              help="Runs moved per transaction.")
@client_options
def db_archive(db: str | None, config_path: str | None, older_than: str,
               archive_path: str | None, chunk: int, url: str, token: str | None,
               retry_for: str) -> None:
    """Move old finished runs (logs, outputs) to the archive database, in chunks.

    While a daemon holds the database, the daemon does it (at --url, with an admin
    token), between its own writes, into its runs.archive.

    \b
    Examples:
      apsisctl db archive --older-than 90d --db apsis.db --archive archive.db
      apsisctl db archive --older-than 90d --config apsis.yaml --url http://sched:5000
    """
    from .ctl_db import run_archive

    raise click.exceptions.Exit(run_archive(db, config_path, older_than, archive_path, chunk,
                                            _client_obj(url, token, retry_for)))


@db.command("vacuum")
@db_options
def db_vacuum(db: str | None, config_path: str | None) -> None:
    """Drop leftovers of interrupted writes and compact the file.

    \b
    Example:
      apsisctl db vacuum --db apsis.db
    """
    from .ctl_db import run_vacuum

    raise click.exceptions.Exit(run_vacuum(db, config_path))


@db.command("copy")
@click.option("--from", "source", metavar="DB", required=True,
              help="The database to copy: a SQLite file or a postgresql:// URL.")
@click.option("--to", "target", metavar="DB", required=True,
              help="Where to copy it: a postgresql:// URL or a SQLite file (created or migrated).")
@click.option("--chunk", type=click.IntRange(1), default=500, show_default=True,
              help="Runs copied per transaction.")
def db_copy(source: str, target: str, chunk: int) -> None:
    """Copy a whole history (runs, logs, outputs, events) into another database.

    Both must be free of daemons. Run it again after an interruption: it copies only
    what is missing or changed, then checks that both hold the same counts (exit 1
    if not).

    \b
    Example:
      apsisctl db copy --from apsis.db --to postgresql://apsis@db1/apsis
    """
    from .ctl_db import run_copy

    raise click.exceptions.Exit(run_copy(source, target, chunk))


@cli.command("version")
def version() -> None:
    """Print the version of Apsis.

    \b
    Example:
      apsisctl version
    """
    from apsis import __version__

    click.echo(__version__)


def main() -> None:
    run_main(cli, "apsisctl")


if __name__ == "__main__":
    main()

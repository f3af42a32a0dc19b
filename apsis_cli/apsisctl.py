"""`apsisctl`: the daemon's side.  Imports stay inside commands so `--help` is fast."""

from __future__ import annotations

import click

from .common import run_main


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """Run and maintain the Apsis daemon, and check job files.

    \b
    Examples:
      apsisctl check-job jobs/                 # validate a jobs directory
      apsisctl check-job jobs/ --list-runs --from 2026-12-01 --to 2026-12-02
      apsisctl serve --jobs jobs --db apsis.db # run the daemon in the foreground
    """


@cli.command("check-job")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True, help="How problems are printed.")
@click.option("--list-runs", is_flag=True, help="Print the runs the schedules would create, as JSON Lines.")
@click.option("--from", "from_", metavar="TIME", help="Start of --list-runs window (default: now).")
@click.option("--to", "to", metavar="TIME", help="End of --list-runs window (default: a day after --from).")
@click.option("-q", "--quiet", is_flag=True, help="Print problems only, no summary.")
def check_job(paths: tuple[str, ...], fmt: str, list_runs: bool, from_: str | None,
              to: str | None, quiet: bool) -> None:
    """Validate job files or whole jobs directories, without a daemon.

    Checks the schema, duplicate keys, durations, daytimes, time zones, calendars,
    cron expressions, templates rendered for every schedule's args, params bound by
    every schedule, dependencies and `schedule` actions on existing jobs with
    matching params, dependency cycles and host groups.  Exits 0 when clean, 1 when
    there are errors (warnings alone do not fail), 2 on a usage error.

    \b
    Examples:
      apsisctl check-job jobs/
      apsisctl check-job jobs/data/load.yaml --format github
      apsisctl check-job jobs/ --list-runs --from 2026-12-01 --to 2026-12-08
    """
    from .check_job import run_check_job

    raise click.exceptions.Exit(run_check_job(paths, fmt, list_runs, from_, to, quiet))


@cli.command("serve")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="apsis.yaml (default: none, the embedded defaults).")
@click.option("--jobs", type=click.Path(file_okay=False), help="Jobs directory (default: ./jobs).")
@click.option("--db", type=click.Path(dir_okay=False), help="SQLite database, created on first start (default: ./apsis.db).")
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


@cli.command("version")
def version() -> None:
    """Print the version of Apsis."""
    from apsis import __version__

    click.echo(__version__)


def main() -> None:
    run_main(cli, "apsisctl")


if __name__ == "__main__":
    main()

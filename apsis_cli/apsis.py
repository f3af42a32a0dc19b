"""`apsis`: the client.  Only Click is imported here; commands import what they use."""

from __future__ import annotations

import click

from .common import run_main


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="APSIS_URL", default="http://127.0.0.1:5000", show_default=True,
              help="The daemon's URL (env APSIS_URL).")
@click.option("--token", envvar="APSIS_TOKEN", default=None, help="API token (env APSIS_TOKEN).")
@click.pass_context
def cli(ctx: click.Context, url: str, token: str | None) -> None:
    """Talk to a running Apsis daemon: runs, output, waiting, the TUI.

    \b
    Examples:
      apsis runs --times
      apsis run data/load-prices date=2026-12-01 --wait --output
      apsis wait r12345 --timeout 2h
    """
    ctx.obj = {"url": url, "token": token}


def main() -> None:
    run_main(cli, "apsis")


if __name__ == "__main__":
    main()

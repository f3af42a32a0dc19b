"""Formatting runs and times for people: local times, run tables, coloured states.

Pure functions over run JSON (SPEC §1.6); state symbols, colours and elapsed times
come from `apsis.present`, shared with the TUI. Rich is imported only by the functions
that build Rich objects, so plain-text paths (pipes, scripts) never pay for it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import Any

from apsis import present
from apsis.present import format_elapsed

from .parse import parse_api_time

UTC = dt.UTC

RUN_COLUMNS = ("run", "state", "job", "args")
TIME_COLUMNS = ("schedule", "start", "end", "elapsed")


def to_zone(value: dt.datetime, utc: bool) -> dt.datetime:
    return value.astimezone(UTC) if utc else value.astimezone()


def format_time(value: dt.datetime | str | None, utc: bool = False, *,
                now: dt.datetime | None = None, compact: bool = True) -> str:
    """A time for a table: today's as `09:30:05`, others as `2026-01-02 09:30`.

    `compact=False` gives the full `2026-01-02 09:30:05 +01:00` (for `show`).
    """
    if isinstance(value, str) or value is None:
        value = parse_api_time(value)
        if value is None:
            return ""
    local = to_zone(value, utc)
    if not compact:
        return local.strftime("%Y-%m-%d %H:%M:%S ") + ("UTC" if utc else local.strftime("%z"))
    today = to_zone(now or dt.datetime.now(UTC), utc).date()
    if local.date() == today:
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def format_args(args: dict[str, Any] | None) -> str:
    return " ".join(f"{k}={v}" for k, v in (args or {}).items())


def _datetime(epoch: float | None) -> dt.datetime | None:
    return None if epoch is None else dt.datetime.fromtimestamp(epoch, UTC)


def run_start(run: dict[str, Any]) -> dt.datetime | None:
    return _datetime(present.started_at(run.get("times") or {}))


def run_end(run: dict[str, Any]) -> dt.datetime | None:
    if run.get("state") not in present.FINISHED_STATES:
        return None
    return _datetime(present.finished_at(run.get("times") or {}))


def run_elapsed(run: dict[str, Any], now: dt.datetime | None = None) -> float | None:
    """Seconds from start to end, or to now while it runs; None if it never started."""
    return present.run_elapsed(run, (now or dt.datetime.now(UTC)).timestamp())


def run_row(run: dict[str, Any], *, times: bool = False, utc: bool = False,
            now: dt.datetime | None = None) -> list[str]:
    """The cells of one row of the run table, as plain strings."""
    row = [run.get("run_id", ""), run.get("state", ""), run.get("job_id", ""),
           format_args(run.get("args"))]
    if times:
        t = run.get("times") or {}
        row += [format_time(t.get("schedule"), utc, now=now),
                format_time(run_start(run), utc, now=now),
                format_time(run_end(run), utc, now=now),
                format_elapsed(run_elapsed(run, now))]
    return row


def columns(times: bool) -> tuple[str, ...]:
    return RUN_COLUMNS + (TIME_COLUMNS if times else ())


def plain_line(cells: list[str], widths: list[int]) -> str:
    """Cells padded to `widths`, two spaces apart; the last cell is never padded."""
    parts = [c.ljust(w) for c, w in zip(cells[:-1], widths)] + [cells[-1]] if cells else []
    return "  ".join(parts).rstrip()


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


def color_enabled(stream: Any = None) -> bool:
    """Colour as `--color`, NO_COLOR, FORCE_COLOR/CLICOLOR_FORCE and the terminal say."""
    from .common import color_wanted

    return color_wanted(stream)


def make_console(stderr: bool = False):  # -> rich.console.Console
    """A Rich console that colours as `color_enabled` says; plain when not a terminal."""
    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    tty = hasattr(stream, "isatty") and stream.isatty()
    color = color_enabled(stream)
    return Console(stderr=stderr, no_color=not color, force_terminal=color or None,
                   highlight=False, soft_wrap=not tty, emoji=False)


def state_text(state: str, color: bool):  # -> rich.text.Text | str
    """The state with its symbol, coloured, when `color`; else its bare name (for scripts)."""
    if not color:
        return state
    from rich.text import Text

    return Text(present.state_label(state), style=present.state_look(state).style)


def click_state(text: str, state: str, *, symbol: bool = True) -> str:
    """`text` in the state's colour for click.echo, after the state's symbol."""
    import click

    look = present.state_look(state)
    return click.style(f"{look.symbol} {text}" if symbol else text, fg=look.color,
                       bold=look.bold or None, dim=look.dim or None,
                       reverse=look.reverse or None)


def run_table(runs: list[dict[str, Any]], *, times: bool, utc: bool, color: bool,
              title: str | None = None):  # -> rich.table.Table
    """A Rich table of runs (keep it to a few hundred rows: ~0.4 ms a row)."""
    from rich.table import Table

    now = dt.datetime.now(UTC)
    table = Table(box=None, header_style="bold" if color else "", title=title,
                  pad_edge=False, show_edge=False)
    for name in columns(times):
        table.add_column(name, no_wrap=name != "args",
                         justify="right" if name == "elapsed" else "left")
    for run in runs:
        cells: list[Any] = run_row(run, times=times, utc=utc, now=now)
        cells[1] = state_text(cells[1], color)
        table.add_row(*cells)
    return table

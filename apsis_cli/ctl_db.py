"""`apsisctl db migrate | check | archive | vacuum | copy`: the database, opened directly.

The database is a SQLite file or a PostgreSQL URL (`open_store` picks). All but
`check` take the database's write lock, so they refuse to run beside a live daemon
(with a hint to stop it) instead of racing it; `archive` asks that daemon to do the
work instead.  `check` opens read-only.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

import click

from . import fmt
from .common import UserError
from .connect import call
from .exitcodes import ExitStatus
from .database import (
    Database,
    database_and_archive,
    is_url,
    need,
    parse_database,
    shown,
    store_errors,
    with_store,
)
from .parse import parse_duration

UTC = dt.UTC


def run_migrate(db: str | None, config_path: str | None) -> int:
    path, _ = database_and_archive(db, config_path)
    if not is_url(path) and not Path(path).parent.is_dir():
        raise UserError(f"no folder {Path(path).parent} for {Path(path).name}",
                        "create it, or give another --db")
    existed = is_url(path) or Path(path).exists()
    from apsis.store import SCHEMA_VERSION

    # open_store migrates (under the lock) as it opens.
    with_store(path, lambda store: asyncio.sleep(0), create=True)
    click.echo(f"{'migrated' if existed else 'created'} {shown(path)}: "
               f"schema version {SCHEMA_VERSION}", err=True)
    return int(ExitStatus.SUCCESS)


def run_check(db: str | None, config_path: str | None, as_json: bool) -> int:
    path, _ = database_and_archive(db, config_path)
    need(path)

    async def body(store: Any) -> tuple[dict[str, Any], list[str]]:
        return await store.stats(), await store.check()

    stats, problems = with_store(path, body, readonly=True)
    if as_json:
        click.echo(fmt.dumps({"ok": not problems, "problems": problems, "stats": stats}))
    else:
        files = "" if is_url(path) else (f" (+{_mib(stats.get('wal_bytes'))} WAL, "
                                          f"{_mib(stats.get('free_bytes'))} free)")
        click.echo(f"{stats.get('path')}: schema {stats.get('schema_version')}, "
                   f"{stats.get('runs')} runs, {stats.get('events')} events, "
                   f"{_mib(stats.get('file_bytes'))}{files}")
        for problem in problems:
            click.echo(f"problem: {problem}")
        click.echo("ok" if not problems else f"{len(problems)} problem(s)", err=True)
    return int(ExitStatus.FAILURE if problems else ExitStatus.SUCCESS)


def _mib(value: Any) -> str:
    return f"{(value or 0) / 1024**2:.1f} MiB"


def run_archive(db: str | None, config_path: str | None, older_than: str,
                archive_path: str | None, chunk: int, client_obj: dict[str, Any]) -> int:
    """Archives in the file directly, or through the daemon when it holds the file."""
    from apsis.store import StoreLockedError, default_archive_path

    path, configured = database_and_archive(db, config_path)
    need(path)
    age = parse_duration(older_than, "--older-than")
    cut = dt.datetime.now(UTC) - dt.timedelta(seconds=age)
    if archive_path:
        target = Path(archive_path)
    elif configured is not None:
        target = configured
    elif isinstance(path, Path):
        target = default_archive_path(path)
    else:
        raise UserError("a PostgreSQL database archives into a SQLite file: which one?",
                        "give --archive FILE, or --config F (runs.archive, else beside F)")
    progress, update = _progress("archiving runs")

    async def body(store: Any) -> int:
        return await store.archive(cut, os.fspath(target), chunk=chunk, progress=update)

    try:
        moved = with_store(path, body, locked_ok=True)
    except StoreLockedError:
        moved = None
    finally:
        if progress is not None:
            progress.stop()
    if moved is None:
        return _archive_through_daemon(path, older_than, archive_path, client_obj)
    click.echo(f"moved {moved} run(s) scheduled before {fmt.format_time(cut, compact=False)} "
               f"to {target}", err=True)
    return int(ExitStatus.SUCCESS)


def _archive_through_daemon(path: Database, older_than: str, archive_path: str | None,
                            client_obj: dict[str, Any]) -> int:
    """A running daemon holds the database: it moves the runs itself, between its writes."""
    url = client_obj["url"]
    if archive_path:
        raise UserError(f"a running daemon holds {shown(path)} and archives to its own runs.archive",
                        "drop --archive, or stop the daemon first: apsisctl shutdown")

    async def main(client: Any) -> dict[str, Any]:
        stats = await client.stats()
        served = (stats.get("store") or {}).get("path")
        if not served or not _same_database(served, path):
            raise UserError(f"the daemon at {url} serves {served or 'another database'}, "
                            f"not {shown(path)}", "give the daemon's --url, or the --db it uses")
        click.echo(f"the daemon at {url} holds {shown(path)}: archiving through it", err=True)
        return await client.archive(older_than)

    result = call(client_obj, main)
    click.echo(f"moved {result['moved']} run(s) scheduled before "
               f"{fmt.format_time(result['before'], compact=False)} to {result['archive']}",
               err=True)
    return int(ExitStatus.SUCCESS)


def _same_database(served: str, database: Database) -> bool:
    """Whether the daemon's database (as its stats name it) is this one."""
    if is_url(database):
        return served == shown(database)
    try:
        return os.path.samefile(served, database)
    except OSError:
        return False


def run_vacuum(db: str | None, config_path: str | None) -> int:
    path, _ = database_and_archive(db, config_path)
    need(path)
    progress, _ = _progress("vacuuming", indeterminate=True)

    async def body(store: Any) -> tuple[int, int]:
        before = (await store.stats())["file_bytes"]
        await store.vacuum()
        return before, (await store.stats())["file_bytes"]

    try:
        before, after = with_store(path, body)
    finally:
        if progress is not None:
            progress.stop()
    how = "vacuumed and analyzed" if is_url(path) else "vacuumed"
    click.echo(f"{how} {shown(path)}: {_mib(before)} → {_mib(after)}", err=True)
    return int(ExitStatus.SUCCESS)


def run_copy(source: str, target: str, chunk: int) -> int:
    """`apsisctl db copy`: everything the target lacks, with a progress bar; exit 1 if
    the counts differ at the end."""
    src, dst = parse_database(source), parse_database(target)
    need(src)
    if shown(src) == shown(dst) or (
        not is_url(src) and not is_url(dst) and _same_database(str(src), dst)
    ):
        raise UserError("--from and --to name the same database")
    from apsis.store.copy import copy_database, open_rows

    progress, update = _progress("copying runs, then events")

    async def main() -> Any:
        async with open_rows(src, target=False) as source_rows, \
                open_rows(dst, target=True) as target_rows:
            return await copy_database(source_rows, target_rows, chunk=chunk, progress=update)

    locked, error = store_errors()
    try:
        report = asyncio.run(main())
    except locked as exc:
        raise UserError(str(exc), "stop the daemon first: apsisctl shutdown",
                        ExitStatus.FAILURE) from None
    except error as exc:
        raise UserError(str(exc), None, ExitStatus.FAILURE) from None
    finally:
        if progress is not None:
            progress.stop()
    click.echo(f"copied {report.runs_copied} run(s) and {report.events_copied} event(s) "
               f"from {shown(src)} to {shown(dst)}"
               + (f"; {report.runs_skipped} run(s) were there already" if report.runs_skipped
                  else ""), err=True)
    for mismatch in report.mismatches:
        click.echo(f"count differs: {mismatch}", err=True)
    if report.mismatches:
        click.echo("the target is not a copy of the source: see above", err=True)
        return int(ExitStatus.FAILURE)
    counts = ", ".join(f"{n} {table}" for table, (n, _) in report.counts.items())
    click.echo(f"verified: both hold {counts}", err=True)
    return int(ExitStatus.SUCCESS)


def _progress(description: str, indeterminate: bool = False) -> tuple[Any, Any]:
    """A Rich progress bar on stderr when it is a terminal; else (None, None)."""
    if not sys.stderr.isatty():
        return None, None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    progress = Progress(*Progress.get_default_columns()[:1], BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), console=fmt.make_console(stderr=True),
                        transient=True)
    task = progress.add_task(description, total=None if indeterminate else 0)
    progress.start()

    def update(done: int, total: int) -> None:
        progress.update(task, completed=done, total=total)

    return progress, update

"""`apsisctl db migrate | check | archive | vacuum`: the SQLite file, opened directly.

All but `check` take the database's write lock, so they refuse to run beside a live
daemon (with a hint to stop it) instead of racing it; `archive` asks that daemon to
do the work instead.  `check` opens read-only.
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
from .parse import parse_duration

UTC = dt.UTC


def _paths(db: str | None, config_path: str | None) -> tuple[Path, Path | None]:
    """(database, archive) from --db and --config, else the embedded default ./apsis.db."""
    archive = None
    database = Path("apsis.db")
    if config_path:
        from apsis.config import load_config
        from apsis.errors import JobError

        try:
            config = load_config(Path(config_path))
        except JobError as exc:
            raise UserError(f"bad config: {exc}") from None
        database, archive = config.database, config.archive
    if db:
        database = Path(db)
    return database, archive


def _store_errors() -> tuple[type[BaseException], type[BaseException]]:
    from apsis.store import StoreError, StoreLockedError

    return StoreLockedError, StoreError


def _run(path: Path, body: Any, *, locked_ok: bool = False, **open_kw: Any) -> Any:
    """`body(store)` on the file; a daemon's lock is a user error unless `locked_ok`,
    which lets the StoreLockedError through for the caller to go through the daemon."""
    from apsis.store import Store

    locked, error = _store_errors()

    async def main() -> Any:
        store = await Store.open(path, **open_kw)
        try:
            return await body(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except locked as exc:
        if locked_ok:
            raise
        raise UserError(str(exc), "stop the daemon first: apsisctl shutdown",
                        ExitStatus.FAILURE) from None
    except error as exc:
        raise UserError(str(exc), None, ExitStatus.FAILURE) from None


def run_migrate(db: str | None, config_path: str | None) -> int:
    path, _ = _paths(db, config_path)
    existed = path.exists()
    from apsis.store import SCHEMA_VERSION

    # Store.open migrates (under the lock) as it opens.
    _run(path, lambda store: asyncio.sleep(0), create=True)
    click.echo(f"{'migrated' if existed else 'created'} {path}: schema version {SCHEMA_VERSION}",
               err=True)
    return int(ExitStatus.SUCCESS)


def run_check(db: str | None, config_path: str | None, as_json: bool) -> int:
    path, _ = _paths(db, config_path)
    if not path.exists():
        raise UserError(f"no database at {path}", "give --db PATH or --config F")

    async def body(store: Any) -> tuple[dict[str, Any], list[str]]:
        return await store.stats(), await store.check()

    stats, problems = _run(path, body, readonly=True)
    if as_json:
        click.echo(fmt.dumps({"ok": not problems, "problems": problems, "stats": stats}))
    else:
        click.echo(f"{path}: schema {stats.get('schema_version')}, {stats.get('runs')} runs, "
                   f"{stats.get('events')} events, {_mib(stats.get('file_bytes'))} "
                   f"(+{_mib(stats.get('wal_bytes'))} WAL, {_mib(stats.get('free_bytes'))} free)")
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

    path, configured = _paths(db, config_path)
    if not path.exists():
        raise UserError(f"no database at {path}", "give --db PATH or --config F")
    age = parse_duration(older_than, "--older-than")
    cut = dt.datetime.now(UTC) - dt.timedelta(seconds=age)
    target = Path(archive_path) if archive_path else configured or default_archive_path(path)
    progress, update = _progress("archiving runs")

    async def body(store: Any) -> int:
        return await store.archive(cut, os.fspath(target), chunk=chunk, progress=update)

    try:
        moved = _run(path, body, locked_ok=True)
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


def _archive_through_daemon(path: Path, older_than: str, archive_path: str | None,
                            client_obj: dict[str, Any]) -> int:
    """A running daemon holds the database: it moves the runs itself, between its writes."""
    url = client_obj["url"]
    if archive_path:
        raise UserError(f"a running daemon holds {path} and archives to its own runs.archive",
                        "drop --archive, or stop the daemon first: apsisctl shutdown")

    async def main(client: Any) -> dict[str, Any]:
        stats = await client.stats()
        served = (stats.get("store") or {}).get("path")
        if not served or not _same_file(served, path):
            raise UserError(f"the daemon at {url} serves {served or 'another database'}, "
                            f"not {path}", "give the daemon's --url, or the --db it uses")
        click.echo(f"the daemon at {url} holds {path}: archiving through it", err=True)
        return await client.archive(older_than)

    result = call(client_obj, main)
    click.echo(f"moved {result['moved']} run(s) scheduled before "
               f"{fmt.format_time(result['before'], compact=False)} to {result['archive']}",
               err=True)
    return int(ExitStatus.SUCCESS)


def _same_file(a: str | Path, b: str | Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def run_vacuum(db: str | None, config_path: str | None) -> int:
    path, _ = _paths(db, config_path)
    if not path.exists():
        raise UserError(f"no database at {path}", "give --db PATH or --config F")
    before = path.stat().st_size
    progress, _ = _progress("vacuuming", indeterminate=True)
    try:
        _run(path, lambda store: store.vacuum())
    finally:
        if progress is not None:
            progress.stop()
    after = path.stat().st_size
    click.echo(f"vacuumed {path}: {_mib(before)} → {_mib(after)}", err=True)
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

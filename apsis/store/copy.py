"""`apsisctl db copy`: a whole history from one database into another, restartably.

Typically from a SQLite file into PostgreSQL (either way works). Both databases are
locked as a daemon locks them, so neither can change under the copy; the target is
created or migrated first. Runs go in batches, each batch one transaction of the
target, with its job definitions, logs and outputs; then events, in order; then the
counters and clocks. Run again after an interruption, it skips the runs that are
already there unchanged and the events already copied, and goes on. At the end the
row counts of both databases are compared.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiosqlite

from apsis.store import is_database_url, pg_schema, postgres, schema
from apsis.store.errors import StoreError
from apsis.store.lock import DatabaseLock
from apsis.store.transfer import PgRows, Rows, SqliteRows, copy_runs

ProgressCallback = Callable[[int, int], None]
TABLES = ("runs", "run_log", "outputs", "output_chunks", "jobdefs", "events")


@dataclass
class CopyReport:
    runs_copied: int = 0
    runs_skipped: int = 0  # already in the target, unchanged
    events_copied: int = 0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)  # table: (source, target)

    @property
    def mismatches(self) -> list[str]:
        return [f"{table}: {src} in the source, {dst} in the target"
                for table, (src, dst) in self.counts.items() if src != dst]


@contextlib.asynccontextmanager
async def open_rows(database: str | os.PathLike[str], *, target: bool) -> AsyncIterator[Rows]:
    """A database as rows, locked against daemons; a target is created or migrated, a
    source must already have this Apsis's schema."""
    if is_database_url(database):
        url = str(database)
        shown = postgres.display_url(url)
        conn = await postgres.connect(url)
        try:
            await postgres.take_daemon_lock(conn, shown)
            if target:
                await pg_schema.apply_migrations(conn)
            else:
                _check_version(shown, await pg_schema.read_version(conn))
            yield PgRows(conn, shown)
        finally:
            await conn.close()
        return
    path = os.fspath(database)
    if not target and not os.path.exists(path):
        raise StoreError(f"no database at {path}")
    lock = DatabaseLock(path)
    lock.acquire()
    try:
        conn_lite = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn_lite.execute("PRAGMA journal_mode = WAL")
            await conn_lite.execute("PRAGMA foreign_keys = ON")
            await conn_lite.execute("PRAGMA busy_timeout = 10000")
            if target:
                await schema.apply_migrations(conn_lite)
            else:
                _check_version(path, await schema.read_version(conn_lite))
            yield SqliteRows(conn_lite, path)
        finally:
            await conn_lite.close()
    finally:
        lock.release()


def _check_version(name: str, version: int) -> None:
    if version != schema.SCHEMA_VERSION:
        raise StoreError(f"database {name} has schema version {version}, this Apsis needs "
                         f"{schema.SCHEMA_VERSION}: run `apsisctl db migrate` on it first")


async def copy_database(
    source: Rows, target: Rows, *, chunk: int = 500, progress: ProgressCallback | None = None
) -> CopyReport:
    """Copies what `target` lacks of `source`; see the module docstring."""
    report = CopyReport()
    src_meta, dst_meta = await source.meta(), await target.meta()
    src_last, dst_last = int(src_meta.get("last_seq", 0)), int(dst_meta.get("last_seq", 0))
    if dst_last > src_last:
        raise StoreError(
            f"{target.name} has events up to seq {dst_last}, {source.name} only up to "
            f"{src_last}: it holds another history, not a copy of this one; "
            "copy into an empty database")
    total = await source.count("runs") + await source.count("events")
    done = 0
    if progress:
        progress(0, total)
    after = 0
    while nums := await source.run_nums_after(after, chunk):
        rows = await source.runs(nums)
        have = await target.run_texts(nums)
        todo = [row for row in rows if have.get(row.run_num) != row.run]
        await copy_runs(source, target, todo)
        report.runs_copied += len(todo)
        report.runs_skipped += len(rows) - len(todo)
        after = nums[-1]
        done += len(nums)
        if progress:
            progress(done, total)
    seq = await target.max_seq()
    while events := await source.events_after(seq, chunk * 10):
        async with target.transaction():
            await target.put_events(events)
        seq = events[-1][0]
        report.events_copied += len(events)
        done += len(events)
        if progress:
            progress(min(done, total), total)
    async with target.transaction():
        await target.put_meta(src_meta)
    for table in TABLES:
        report.counts[table] = (await source.count(table), await target.count(table))
    if progress:
        progress(total, total)
    return report

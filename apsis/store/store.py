"""The async SQLite store: runs, their logs and outputs, job definitions, events.

The engine writes, the API reads; the store decides nothing. Two connections: one
writer (every write goes through it, under an asyncio lock, so that transactions never
interleave) and one reader, which in WAL mode reads committed data without waiting for
the writer. Nothing about finished runs is kept in memory.

What both backends do alike is `StoreBase` (apsis/store/common.py); this module holds
SQLite's statements, its connections and transactions, and its maintenance.

The writer is a plain sqlite3 connection on a thread of its own (`WriterConnection`):
a whole write transaction (BEGIN, its statements, COMMIT) is one trip to that thread,
not one per statement. Each trip's answer waits for the event loop, which in a burst is
busy fanning events out; seven trips a transaction made a 25 ms commit take ~100 ms.

Durability: WAL with `synchronous=FULL`, so a commit is fsync'd before `write` returns:
"a 2xx reply means the change is in the database" holds even across a power cut.
(NORMAL would only lose the last commits on power loss, not on a crash of the daemon;
batching many transitions per `write` keeps the fsync cost per transition small.)
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import datetime as dt
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import aiosqlite

from apsis.store import archive, schema
from apsis.store.common import (
    DEFAULT_CONTENT_TYPE,
    FINISHED_STATES,
    SUMMARY_OMITS,
    ProgressCallback,
    RunPage,
    SmallOutput,
    Statements,
    StoreBase,
    SummaryPage,
)
from apsis.store.errors import DiskFullError, StoreError, is_disk_full
from apsis.store.keys import json_list, time_key
from apsis.store.lock import DatabaseLock, lock_holder

__all__ = ["DEFAULT_CONTENT_TYPE", "RunPage", "SmallOutput", "Store", "SummaryPage"]

SQL = Statements(
    last_seq="SELECT seq FROM sqlite_sequence WHERE name = 'events'",
    allocate_run_ids=(
        "UPDATE meta SET value = value + ? WHERE key = 'next_run_num' RETURNING value"
    ),
    raise_next_run_num="UPDATE meta SET value = max(value, ?) WHERE key = 'next_run_num'",
    in_list="IN (SELECT value FROM json_each(?))",
    load_unfinished=(
        "SELECT run FROM runs INDEXED BY runs_state_time "
        "WHERE state IN (SELECT value FROM json_each(?)) ORDER BY sort_time, run_num"
    ),
    list_outputs=(
        "SELECT output_id, length, original_length, content_type FROM outputs "
        "WHERE run_num = ? ORDER BY output_id"
    ),
    # SQLite cuts the summary out of the stored JSON (SUMMARY_OMITS).
    summary=(
        "SELECT sort_time, run_num, json_remove(run, "
        + ", ".join(f"'$.{key}'" for key in SUMMARY_OMITS) + ") FROM ({})"
    ),
    is_distinct_from="IS NOT",
)


class WriterConnection:
    """A sqlite3 connection used from one thread of its own, with aiosqlite's calls (what
    the migrations, the archive and the hooks use) and `run`, which does a whole piece of
    work there in one trip: aiosqlite has no public way to."""

    def __init__(self, conn: sqlite3.Connection, thread: ThreadPoolExecutor) -> None:
        self._conn = conn
        self._thread = thread

    @classmethod
    async def open(cls, path: str) -> WriterConnection:
        thread = ThreadPoolExecutor(1, thread_name_prefix="apsis-sqlite-writer")
        try:
            conn = await asyncio.get_running_loop().run_in_executor(
                thread, functools.partial(sqlite3.connect, path, isolation_level=None,
                                          check_same_thread=False))
        except BaseException:
            thread.shutdown(wait=False)
            raise
        return cls(conn, thread)

    async def run(self, work: Callable[[sqlite3.Connection], Any]) -> Any:
        """`work(connection)` on the connection's thread."""
        return await asyncio.get_running_loop().run_in_executor(self._thread, work, self._conn)

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return await self.run(lambda conn: conn.execute(sql, params))  # type: ignore[no-any-return]

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())  # type: ignore[no-any-return]

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        await self.run(lambda conn: conn.executemany(sql, rows))

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def close(self) -> None:
        try:
            await self.run(sqlite3.Connection.close)
        finally:
            self._thread.shutdown(wait=False)


class _Direct:
    """The connection as a transaction's body sees it while it runs on the writer's
    thread: the same awaitable calls, done at once (the body never suspends)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, params)

    async def execute_fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._conn.execute(sql, params).fetchall()

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)


def _to_end(body: Coroutine[Any, Any, Any]) -> Any:
    """The result of a coroutine that never suspends, run to its end here."""
    try:
        body.send(None)
    except StopIteration as stop:
        return stop.value
    body.close()
    raise RuntimeError("a write transaction's body waited on something else than the database")


class Store(StoreBase):
    """The database of one Apsis daemon. Open with `await Store.open(path)`."""

    sql = SQL
    schema: ClassVar[ModuleType] = schema
    read_errors = (sqlite3.Error, ValueError)  # ValueError: the connection is closed

    def __init__(
        self,
        path: str,
        reader: aiosqlite.Connection,
        writer: WriterConnection | None,
        lock: DatabaseLock | None,
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._lock = lock
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._next_seq = 1
        self._staging = {}
        self._closed = False

    # ------------------------------------------------------------------ open/close

    @classmethod
    async def open(
        cls,
        path: str | os.PathLike[str],
        *,
        create: bool = True,
        readonly: bool = False,
        synchronous: str = "FULL",
    ) -> Store:
        """Opens (and, unless readonly, locks and migrates) the database at `path`.

        Raises `StoreLockedError` if another process has it open for writing.
        """
        path = os.fspath(path)
        if (readonly or not create) and not os.path.exists(path):
            raise StoreError(f"no database at {path} (`apsisctl db migrate` creates one)")
        if synchronous.upper() not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise ValueError(f"bad synchronous mode: {synchronous!r}")
        lock = None if readonly else DatabaseLock(path)
        reader: aiosqlite.Connection | None = None
        writer: WriterConnection | None = None
        try:
            if lock is not None:
                lock.acquire()
                writer = await WriterConnection.open(path)
                await writer.execute("PRAGMA journal_mode = WAL")
                await writer.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                await writer.execute("PRAGMA foreign_keys = ON")
                await writer.execute("PRAGMA busy_timeout = 10000")
                await schema.apply_migrations(writer)  # type: ignore[arg-type]
                reader = await aiosqlite.connect(path, isolation_level=None)
            else:
                uri = Path(path).resolve().as_uri() + "?mode=ro"
                reader = await aiosqlite.connect(uri, uri=True, isolation_level=None)
            await reader.execute("PRAGMA query_only = ON")
            await reader.execute("PRAGMA busy_timeout = 10000")
            version = await schema.read_version(reader)
            if version != schema.SCHEMA_VERSION:
                raise StoreError(
                    f"database {path} has schema version {version}, this Apsis needs "
                    f"{schema.SCHEMA_VERSION}: run `apsisctl db migrate`"
                )
            store = cls(path, reader, writer, lock)
            store._next_seq = await store.last_seq() + 1
            return store
        except BaseException as exc:
            for conn in (reader, writer):
                if conn is not None:
                    await conn.close()
            if lock is not None:
                lock.release()
            if is_disk_full(exc):
                raise DiskFullError(path) from exc
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with self._write_lock, self._read_lock:
                await self._reader.close()
                if self._writer is not None:
                    await self._writer.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    async def cluster(self) -> dict[str, Any]:
        """PostgreSQL's leader row, as it is on SQLite: one daemon at most, the process
        holding the file's lock (`apsisctl status`)."""
        pid = lock_holder(self.path)
        nodes = [] if pid is None else [{"name": f"pid {pid}", "leader": True, "since": None}]
        return {"epoch": 0, "leader": nodes[0]["name"] if nodes else None, "advertise": None,
                "heartbeat": None, "nodes": nodes}

    # ------------------------------------------------------------------ connections

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        async with self._read_lock:
            return list(await self._reader.execute_fetchall(sql, params))

    @staticmethod
    async def _fetch(conn: Any, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return list(await conn.execute_fetchall(sql, params))

    @staticmethod
    async def _execute(conn: Any, sql: str, params: Sequence[Any] = ()) -> int:
        cursor = await conn.execute(sql, params)
        return cursor.rowcount

    @staticmethod
    async def _executemany(conn: Any, sql: str,
                           rows: Sequence[Sequence[Any]]) -> None:
        await conn.executemany(sql, rows)

    @staticmethod
    def _list_param(values: Iterable[Any]) -> str:
        return json_list(values)

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[aiosqlite.Connection]:
        """One read transaction: the statements run inside it see the same snapshot.

        It always ends, even when the caller is cancelled (a websocket client that
        leaves at once): a transaction left open fails every later read and pins the
        WAL. aiosqlite runs BEGIN and its end on its thread whatever happens to the
        awaiting task, so the end waits for BEGIN, and the read lock is held until the
        end is done: the next reader's BEGIN cannot overtake it.
        """
        await self._read_lock.acquire()
        begin = asyncio.ensure_future(self._reader.execute("BEGIN"))
        try:
            await asyncio.shield(begin)
            yield self._reader
        finally:
            await asyncio.shield(asyncio.ensure_future(self._end_snapshot(begin)))

    async def _end_snapshot(self, begin: asyncio.Future[Any]) -> None:
        try:
            await asyncio.wait({begin})
            # A failed statement may already have ended it (SQLite rolls back on some errors).
            if self._reader.in_transaction:
                await self._reader.execute("ROLLBACK")
        finally:
            self._read_lock.release()

    async def _run_transaction(self, writer: WriterConnection,
                               body: Callable[[Any], Any]) -> Any:
        def transaction(conn: sqlite3.Connection) -> Any:
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = _to_end(body(_Direct(conn)))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            return result

        try:
            return await writer.run(transaction)
        except BaseException as exc:
            if is_disk_full(exc):
                raise DiskFullError(self.path) from exc
            if isinstance(exc, sqlite3.IntegrityError):
                raise StoreError(f"write refused by the database: {exc}") from exc
            raise

    async def _claim_seqs(self, conn: Any, n: int) -> list[int]:
        # Given here, under the write lock: this is the only writer. AUTOINCREMENT's
        # counter (sqlite_sequence) then keeps them after a trim or a reopen.
        return list(range(self._next_seq, self._next_seq + n))

    def _seqs_committed(self, seqs: list[int]) -> None:
        if seqs:
            self._next_seq = seqs[-1] + 1

    async def _after_write(self, conn: Any, seqs: list[int]) -> None:
        pass  # nothing listens: one daemon per file

    # ------------------------------------------------------------------ maintenance

    async def _own_problems(self) -> list[str]:
        """SQLite's integrity check (it reads every page) and foreign keys."""
        problems: list[str] = []
        for (line,) in await self._read("PRAGMA integrity_check"):
            if line != "ok":
                problems.append(f"integrity: {line}")
        for table, rowid, parent, _ in await self._read("PRAGMA foreign_key_check"):
            problems.append(f"foreign key: {table} row {rowid} points to a missing {parent} row")
        return problems

    async def _compact(self) -> None:
        """Rebuilds the file compactly. Blocks writes while it runs: a maintenance
        command, not a daemon task."""
        writer = self._need_writer()
        async with self._write_lock:
            await writer.execute("VACUUM")
            await writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def _sizes(self, conn: aiosqlite.Connection) -> dict[str, int]:
        ((page_size,),) = await conn.execute_fetchall("PRAGMA page_size")
        ((page_count,),) = await conn.execute_fetchall("PRAGMA page_count")
        ((freelist,),) = await conn.execute_fetchall("PRAGMA freelist_count")
        wal = Path(self.path + "-wal")
        return {
            "file_bytes": page_size * page_count,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "free_bytes": page_size * freelist,
        }

    async def archive(
        self,
        older_than: dt.datetime | str,
        archive_path: str | os.PathLike[str],
        *,
        chunk: int = 1000,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Moves finished runs scheduled before `older_than` (with their logs, outputs
        and job definitions) into the archive database; returns how many were moved.

        Each chunk is copied in one short transaction on the archive, then deleted in one
        on this database, so the daemon's writes go on in between. A crash between the
        two leaves a run in both; the next archive finishes the move.
        """
        writer = self._need_writer()
        cut = time_key(older_than)
        archive_path = os.fspath(archive_path)
        if os.path.abspath(archive_path) == os.path.abspath(self.path) or (
            os.path.exists(archive_path) and os.path.samefile(archive_path, self.path)
        ):
            raise StoreError("the archive must be another file than the database")
        archive_lock = DatabaseLock(archive_path)
        archive_lock.acquire()
        try:
            conn = await aiosqlite.connect(archive_path, isolation_level=None)
            try:
                await conn.execute("PRAGMA journal_mode = WAL")
                await schema.apply_migrations(conn)
            finally:
                await conn.close()
            ((total,),) = await self._read(
                "SELECT count(*) FROM runs INDEXED BY runs_time WHERE sort_time < ? "
                "AND state IN (SELECT value FROM json_each(?))",
                (cut, json_list(FINISHED_STATES)),
            )
            async with self._write_lock:
                await writer.execute("ATTACH DATABASE ? AS arch", (archive_path,))
                await writer.execute("PRAGMA arch.synchronous = FULL")
            try:
                moved = 0
                if progress:
                    progress(0, total)
                while True:
                    async with self._write_lock:
                        rows = list(
                            await writer.execute_fetchall(
                                "SELECT run_num FROM main.runs INDEXED BY runs_time "
                                "WHERE sort_time < ? AND state IN (SELECT value FROM json_each(?)) "
                                "ORDER BY sort_time LIMIT ?",
                                (cut, json_list(FINISHED_STATES), chunk),
                            )
                        )
                    if not rows:
                        break
                    nums = json_list(num for (num,) in rows)
                    await self._transaction(functools.partial(archive.copy_to_archive, nums=nums))
                    await self._transaction(functools.partial(archive.delete_runs, nums=nums))
                    moved += len(rows)
                    if progress:
                        progress(moved, max(total, moved))
                    await asyncio.sleep(0)
                return moved
            finally:
                async with self._write_lock:
                    await writer.execute("DETACH DATABASE arch")
        finally:
            archive_lock.release()

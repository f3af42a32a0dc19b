"""The async SQLite store: runs, their logs and outputs, job definitions, events.

The engine writes, the API reads; the store decides nothing. Two connections: one
writer (every write goes through it, under an asyncio lock, so that transactions never
interleave) and one reader, which in WAL mode reads committed data without waiting for
the writer. Nothing about finished runs is kept in memory.

Durability: WAL with `synchronous=FULL`, so a commit is fsync'd before `write` returns:
"a 2xx reply means the change is in the database" holds even across a power cut.
(NORMAL would only lose the last commits on power loss, not on a crash of the daemon;
batching many transitions per `write` keeps the fsync cost per transition small.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Self

import aiosqlite

from apsis.model.states import FINISHED, UNFINISHED, State
from apsis.store import archive, keys, schema
from apsis.store import outputs as out
from apsis.store.errors import DiskFullError, StoreError, UnknownRunError, is_disk_full
from apsis.store.keys import encode_cursor, json_list, run_sort_time, time_key
from apsis.store.lock import DatabaseLock, lock_holder
from apsis.store.query import SELECTIVE, RunQuery

Run = dict[str, Any]
ProgressCallback = Callable[[int, int], None]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_TRIM_BATCH = 10_000

_FINISHED = sorted(s.value for s in FINISHED)
_UNFINISHED = sorted(s.value for s in UNFINISHED)


class RunPage(NamedTuple):
    """One page of `query_runs`: the runs, the cursor of the next page, and the event
    seq the page is consistent with (replaying events after it brings it up to date)."""

    runs: list[Run]
    cursor: str | None
    seq: int


class SummaryPage(NamedTuple):
    """One page of `query_run_summaries`: each run as the JSON text of its summary."""

    runs: list[str]
    cursor: str | None
    seq: int


# A run's summary is the run without these: what tables draw, without what only the Run
# screen shows (program, conditions, actions, outputs) or the engine's own. SQLite cuts it
# out of the stored JSON.
SUMMARY_OMITS = ("program", "conditions", "actions", "outputs", "meta", "job")
_SUMMARY_SQL = "json_remove(run, " + ", ".join(f"'$.{key}'" for key in SUMMARY_OMITS) + ")"


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


@dataclass(frozen=True, slots=True)
class SmallOutput:
    """An output compressed in memory, written within a `write` transaction."""

    num: int
    output_id: str
    chunks: list[out.Chunk]
    length: int
    original_length: int
    content_type: str


async def _write_small_output(conn: aiosqlite.Connection, output: SmallOutput) -> None:
    num, output_id = output.num, output.output_id
    rows = list(await conn.execute_fetchall(
        "SELECT gen FROM outputs WHERE run_num = ? AND output_id = ?", (num, output_id)))
    gen = (rows[0][0] if rows else 0) + 1
    await conn.execute("DELETE FROM output_chunks WHERE run_num = ? AND output_id = ?", (num, output_id))
    await conn.executemany(
        "INSERT INTO output_chunks (run_num, output_id, gen, chunk_no, start, length, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(num, output_id, gen, c.chunk_no, c.start, c.length, c.data) for c in output.chunks])
    await conn.execute(
        "INSERT INTO outputs (run_num, output_id, gen, length, original_length, content_type) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_num, output_id) DO UPDATE SET "
        "gen = excluded.gen, length = excluded.length, original_length = excluded.original_length, "
        "content_type = excluded.content_type",
        (num, output_id, gen, output.length, output.original_length, output.content_type))


class Store:
    """The database of one Apsis daemon. Open with `await Store.open(path)`."""

    def __init__(
        self,
        path: str,
        reader: aiosqlite.Connection,
        writer: aiosqlite.Connection | None,
        lock: DatabaseLock | None,
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer = writer
        self._lock = lock
        self._read_lock = asyncio.Lock()
        self._write_lock = asyncio.Lock()
        self._last_seq = 0
        # (run_num, output_id) -> gen of outputs being written right now.
        self._staging: dict[tuple[int, str], int] = {}
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
        writer: aiosqlite.Connection | None = None
        try:
            if lock is not None:
                lock.acquire()
                writer = await aiosqlite.connect(path, isolation_level=None)
                await writer.execute("PRAGMA journal_mode = WAL")
                await writer.execute(f"PRAGMA synchronous = {synchronous.upper()}")
                await writer.execute("PRAGMA foreign_keys = ON")
                await writer.execute("PRAGMA busy_timeout = 10000")
                await schema.apply_migrations(writer)
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
            store._last_seq = await store._read_last_seq()
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

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def readonly(self) -> bool:
        return self._writer is None

    async def migrate(self) -> list[int]:
        """Applies pending migrations (`open` already does); returns the versions applied."""
        writer = self._need_writer()
        async with self._write_lock:
            return await schema.apply_migrations(writer)

    # ------------------------------------------------------------------ plumbing

    def _need_writer(self) -> aiosqlite.Connection:
        if self._writer is None:
            raise StoreError(f"database {self.path} is open read-only")
        return self._writer

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        async with self._read_lock:
            return list(await self._reader.execute_fetchall(sql, params))

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

    async def read_problem(self, timeout: float = 5.0) -> str | None:
        """Why the database cannot be read right now, or None: what `/alive` reports.

        A read transaction like any other reader's, so a reader left unusable shows here.
        """
        async def probe() -> None:
            async with self._snapshot() as conn:
                await conn.execute_fetchall("SELECT seq FROM sqlite_sequence WHERE name = 'events'")

        try:
            await asyncio.wait_for(probe(), timeout)
        except TimeoutError:
            return f"reading the database {self.path} took over {timeout:g}s"
        except (sqlite3.Error, ValueError) as exc:  # ValueError: the connection is closed
            return f"cannot read the database {self.path}: {exc}"
        return None

    async def _read_last_seq(self) -> int:
        async with self._read_lock:
            return await _last_seq(self._reader)

    async def _transaction(
        self,
        body: Callable[[aiosqlite.Connection], Any],
        *,
        committed: Callable[[Any], None] | None = None,
        failed: Callable[[], None] | None = None,
    ) -> Any:
        """Runs `body` in one write transaction; cancelling the caller does not cut it
        in half (it finishes, committed or rolled back, and the callbacks run)."""
        writer = self._need_writer()

        async def run() -> Any:
            async with self._write_lock:
                await writer.execute("BEGIN IMMEDIATE")
                try:
                    result = await body(writer)
                    await writer.execute("COMMIT")
                except BaseException as exc:
                    if writer.in_transaction:
                        await writer.execute("ROLLBACK")
                    if failed is not None:
                        failed()
                    if is_disk_full(exc):
                        raise DiskFullError(self.path) from exc
                    raise
                if committed is not None:
                    committed(result)
                return result

        return await asyncio.shield(asyncio.ensure_future(run()))

    # ------------------------------------------------------------------ run ids, clock

    async def allocate_run_ids(self, n: int = 1) -> list[str]:
        """`n` new run ids, strictly increasing and never handed out again.

        The counter is committed before the ids are returned, so an id that appeared
        anywhere (a log line, a reply) is not reused after a crash.
        """
        if n < 1:
            return []

        async def body(conn: aiosqlite.Connection) -> int:
            rows = list(
                await conn.execute_fetchall(
                    "UPDATE meta SET value = value + ? WHERE key = 'next_run_num' RETURNING value",
                    (n,),
                )
            )
            return int(rows[0][0])

        end = await self._transaction(body)
        return [keys.run_id(num) for num in range(end - n, end)]

    async def get_clock(self) -> str | None:
        """The time up to which schedules have been processed, as last set."""
        rows = await self._read("SELECT value FROM meta WHERE key = 'clock'")
        return rows[0][0] if rows else None

    async def get_schedule_clocks(self) -> dict[str, str]:
        """Schedules expanded only up to an earlier time than the clock (their count of
        runs ahead is bounded): schedule key → that time."""
        rows = await self._read("SELECT key, value FROM meta WHERE key LIKE 'clock:%'")
        return {key.removeprefix("clock:"): value for key, value in rows}

    async def set_clock(self, time: str | dt.datetime) -> None:
        value = time.isoformat() if isinstance(time, dt.datetime) else time

        async def body(conn: aiosqlite.Connection) -> None:
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES ('clock', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (value,),
            )

        await self._transaction(body)

    # ------------------------------------------------------------------ writes

    async def write(
        self,
        runs: Sequence[Run] = (),
        log_entries: Sequence[Mapping[str, Any]] = (),
        events: Sequence[dict[str, Any]] = (),
        *,
        clock: str | dt.datetime | None = None,
        schedule_clocks: Mapping[str, str | None] | None = None,
        outputs: Sequence[SmallOutput] = (),
    ) -> list[int]:
        """Records runs, run log entries and events (and the clock) in one transaction.

        `schedule_clocks` set (or, for None, drop) the clocks of single schedules
        (`get_schedule_clocks`), in the same transaction.

        `outputs` (from `prepare_small_output`) go in the same transaction: a quick
        program's output and its final state cost one commit, not three.

        Runs are upserted whole. A run may carry the job definition it was bound with
        under "job": it is stored once per distinct definition and linked from the run
        (a run written later without "job" keeps its link). Each event gets the next
        `seq`, set into the dict and returned. All or nothing: on error nothing is kept.
        """
        run_rows, jobdefs, max_num = _prepare_runs(runs)
        log_rows = [_prepare_log_entry(entry) for entry in log_entries]
        event_meta = [_event_keys(event) for event in events]
        clock_value = clock.isoformat() if isinstance(clock, dt.datetime) else clock

        async def body(conn: aiosqlite.Connection) -> list[int]:
            # seqs are given here, under the write lock: this is the only writer.
            first = self._last_seq + 1
            seqs = list(range(first, first + len(events)))
            try:
                event_rows = []
                for seq, event, (ts, type_, num, job_id) in zip(seqs, events, event_meta):
                    event["seq"] = seq
                    event_rows.append((seq, ts, type_, num, job_id, _dumps(event)))
                if jobdefs:
                    await conn.executemany(
                        "INSERT OR IGNORE INTO jobdefs (hash, job) VALUES (?, ?)",
                        list(jobdefs.items()),
                    )
                if run_rows:
                    await conn.executemany(_UPSERT_RUN, run_rows)
                    await conn.execute(
                        "UPDATE meta SET value = max(value, ?) WHERE key = 'next_run_num'",
                        (max_num + 1,),
                    )
                if log_rows:
                    await conn.executemany(
                        "INSERT INTO run_log (run_num, ts, state, message) VALUES (?, ?, ?, ?)",
                        log_rows,
                    )
                if event_rows:
                    await conn.executemany(
                        "INSERT INTO events (seq, ts, type, run_num, job_id, event) "
                        "VALUES (?, ?, ?, ?, ?, ?)",
                        event_rows,
                    )
                for output in outputs:
                    await _write_small_output(conn, output)
                if clock_value is not None:
                    await conn.execute(
                        "INSERT INTO meta (key, value) VALUES ('clock', ?) "
                        "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        (clock_value,),
                    )
                for key, value in (schedule_clocks or {}).items():
                    if value is None:
                        await conn.execute("DELETE FROM meta WHERE key = ?", (f"clock:{key}",))
                    else:
                        await conn.execute(
                            "INSERT INTO meta (key, value) VALUES (?, ?) "
                            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                            (f"clock:{key}", value),
                        )
            except sqlite3.IntegrityError as exc:
                raise StoreError(f"write refused by the database: {exc}") from exc
            return seqs

        def committed(seqs: list[int]) -> None:
            if seqs:
                self._last_seq = seqs[-1]

        def failed() -> None:
            for event in events:
                event.pop("seq", None)

        return await self._transaction(body, committed=committed, failed=failed)

    # ------------------------------------------------------------------ run reads

    async def get_run(self, run_id: str) -> Run | None:
        rows = await self._read("SELECT run FROM runs WHERE run_num = ?", (_num(run_id),))
        return json.loads(rows[0][0]) if rows else None

    async def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs that exist among `run_ids`, in the order asked."""
        nums = [_num(r) for r in run_ids]
        rows = await self._read(
            "SELECT run_num, run FROM runs WHERE run_num IN (SELECT value FROM json_each(?))",
            (json_list(nums),),
        )
        by_num = {num: text for num, text in rows}
        return [json.loads(by_num[n]) for n in nums if n in by_num]

    async def get_run_job(self, run_id: str) -> dict[str, Any] | None:
        """The job definition the run was bound with, if one was written with it."""
        rows = await self._read(
            "SELECT j.job FROM runs r JOIN jobdefs j ON j.jobdef_id = r.jobdef_id "
            "WHERE r.run_num = ?",
            (_num(run_id),),
        )
        return json.loads(rows[0][0]) if rows else None

    async def load_unfinished_runs(self) -> list[Run]:
        """Every run not yet finished, oldest first: what the engine restores at start."""
        rows = await self._read(
            "SELECT run FROM runs INDEXED BY runs_state_time "
            "WHERE state IN (SELECT value FROM json_each(?)) ORDER BY sort_time, run_num",
            (json_list(_UNFINISHED),),
        )
        return [json.loads(text) for (text,) in rows]

    async def run_log(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT ts, state, message FROM run_log WHERE run_num = ? ORDER BY entry_id",
            (_num(run_id),),
        )
        return [{"run_id": run_id, "ts": ts, "state": st, "message": msg} for ts, st, msg in rows]

    async def count_runs_by_state(self) -> dict[str, int]:
        """Runs per state (every state, zeros included), from counters the triggers keep."""
        counts = {s.value: 0 for s in State}
        for state, n in await self._read("SELECT state, n FROM run_counts"):
            counts[state] = n
        return counts

    async def query_runs(
        self,
        *,
        job_id: str | None = None,
        states: Iterable[str] | None = None,
        since: str | dt.datetime | None = None,
        until: str | dt.datetime | None = None,
        labels: str | Iterable[str] | None = None,
        args: Mapping[str, str] | None = None,
        run_ids: Iterable[str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> RunPage:
        """Runs matching every filter given, newest first (schedule time, then run number).

        `since` is inclusive and `until` exclusive, on the schedule time. `labels`: runs
        carrying all of them. The page and its `seq` come from one read transaction.
        Raises `InvalidCursorError` for a cursor this store did not produce.
        """
        texts, next_cursor, seq = await self._query_run_texts(
            job_id=job_id, states=states, since=since, until=until, labels=labels, args=args,
            run_ids=run_ids, limit=limit, cursor=cursor, summaries=False)
        return RunPage([json.loads(text) for text in texts], next_cursor, seq)

    async def query_run_summaries(self, **filters: Any) -> SummaryPage:
        """As `query_runs` (the same filters), each run as the JSON text of its summary,
        cut by SQLite and never parsed here: a table of 100 000 runs costs the daemon an
        index scan, not 100 000 parses and encodings."""
        return SummaryPage(*await self._query_run_texts(**filters, summaries=True))

    async def _query_run_texts(
        self,
        *,
        job_id: str | None = None,
        states: Iterable[str] | None = None,
        since: str | dt.datetime | None = None,
        until: str | dt.datetime | None = None,
        labels: str | Iterable[str] | None = None,
        args: Mapping[str, str] | None = None,
        run_ids: Iterable[str] | None = None,
        limit: int = 100,
        cursor: str | None = None,
        summaries: bool,
    ) -> tuple[list[str], str | None, int]:
        query = RunQuery(limit)
        query.add_filters(
            job_id=job_id,
            states=None if states is None else [str(s) for s in states],
            since=since,
            until=until,
            cursor=cursor,
        )
        side = query.side_filters(labels, args)
        nums = None if run_ids is None else [_num(r) for r in run_ids]
        async with self._snapshot() as conn:
            if nums is None and side:
                counts = [await _probe(conn, sql, params) for sql, params in side]
                query.choose_driver(side, counts)
            query.finish(nums, side)
            sql = query.sql()
            if summaries:  # the same rows, cut down
                sql = f"SELECT sort_time, run_num, {_SUMMARY_SQL} FROM ({sql})"
            rows = list(await conn.execute_fetchall(sql, query.params))
            seq = await _last_seq(conn)
        if summaries:  # in their order again (linear when SQLite kept it): not a temp B-tree
            rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        next_cursor = None
        if len(rows) > limit:
            sort_time, num, _ = rows[limit - 1]
            next_cursor = encode_cursor(sort_time, num)
        return [text for _, _, text in rows[:limit]], next_cursor, seq

    # ------------------------------------------------------------------ events

    async def last_seq(self) -> int:
        """The seq of the last event ever written (0 if none), even if trimmed since."""
        return await self._read_last_seq()

    async def first_retained_seq(self) -> int:
        """The oldest seq still stored; `last_seq() + 1` when none is.

        A client that saw up to seq S can resume losslessly iff S + 1 >= this.
        """
        async with self._snapshot() as conn:
            return await _first_retained_seq(conn)

    async def events_since(
        self,
        seq: int,
        *,
        limit: int = 1000,
        types: Iterable[str] | None = None,
        run_id: str | None = None,
        job_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Stored events with seq > `seq`, in order, matching the filters given."""
        where = ["seq > ?"]
        params: list[Any] = [seq]
        if types is not None:
            where.append("type IN (SELECT value FROM json_each(?))")
            params.append(json_list(types))
        if run_id is not None:
            where.append("run_num = ?")
            params.append(_num(run_id))
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        params.append(limit)
        rows = await self._read(
            f"SELECT event FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?", params
        )
        return [json.loads(text) for (text,) in rows]

    async def trim_events(
        self, keep_seconds: float | None = None, keep_count: int | None = None
    ) -> int:
        """Deletes events older than `keep_seconds` or beyond the newest `keep_count`,
        in short batches; seqs are never reused after. Returns how many were deleted."""
        bounds: list[int] = []
        if keep_count is not None:
            bounds.append(self._last_seq - max(keep_count, 0) + 1)
        if keep_seconds is not None:
            cut = time_key(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=keep_seconds))
            rows = await self._read(
                "SELECT seq FROM events WHERE ts >= ? ORDER BY seq LIMIT 1", (cut,)
            )
            bounds.append(int(rows[0][0]) if rows else self._last_seq + 1)
        if not bounds:
            return 0
        below = max(bounds)  # delete seq < below
        deleted = 0
        while True:

            async def body(conn: aiosqlite.Connection) -> int:
                cur = await conn.execute(
                    "DELETE FROM events WHERE seq IN "
                    "(SELECT seq FROM events WHERE seq < ? ORDER BY seq LIMIT ?)",
                    (below, _TRIM_BATCH),
                )
                return cur.rowcount

            count = await self._transaction(body)
            deleted += count
            if count < _TRIM_BATCH:
                return deleted
            await asyncio.sleep(0)

    # ------------------------------------------------------------------ outputs

    async def store_output_from_file(
        self,
        run_id: str,
        output_id: str,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> dict[str, Any]:
        """Stores a file as the run's output, streaming: memory stays at a few MiB
        whatever the file's size. Over `max_bytes`, keeps the head and the tail."""
        original, chunks = await asyncio.to_thread(out.file_chunks, path, max_bytes)
        return await self._store_output(run_id, output_id, original, chunks, content_type)

    async def store_output_bytes(
        self,
        run_id: str,
        output_id: str,
        data: bytes,
        max_bytes: int | None = None,
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> dict[str, Any]:
        chunks = out.compress_chunks(out.pieces_of_bytes(data, max_bytes))
        return await self._store_output(run_id, output_id, len(data), chunks, content_type)

    async def _store_output(
        self,
        run_id: str,
        output_id: str,
        original_length: int,
        chunks: Iterator[out.Chunk],
        content_type: str,
    ) -> dict[str, Any]:
        """Writes a new version of an output beside the old one, then switches to it.

        Compression runs in a thread, a chunk at a time; each chunk is its own short
        write, so a large output never holds the writer for long. Readers see the old
        version until the switch.
        """
        num = _num(run_id)
        key = (num, output_id)
        if key in self._staging:
            raise StoreError(f"output {output_id!r} of {run_id} is already being stored")
        writer = self._need_writer()
        async with self._write_lock:
            rows = list(
                await writer.execute_fetchall(
                    "SELECT (SELECT 1 FROM runs WHERE run_num = ?), "
                    "(SELECT gen FROM outputs WHERE run_num = ? AND output_id = ?)",
                    (num, num, output_id),
                )
            )
        if rows[0][0] is None:
            raise StoreError(f"no run {run_id}: write the run before its output")
        gen = (rows[0][1] or 0) + 1
        self._staging[key] = gen
        insert = (
            "INSERT INTO output_chunks (run_num, output_id, gen, chunk_no, start, length, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)"
        )

        def row(chunk: out.Chunk) -> tuple[Any, ...]:
            return (num, output_id, gen, chunk.chunk_no, chunk.start, chunk.length, chunk.data)

        try:
            async with self._write_lock:
                # Leftovers of a store of the same gen interrupted by a crash.
                await writer.execute(
                    "DELETE FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen = ?",
                    (num, output_id, gen),
                )
            length = 0
            pending = await asyncio.to_thread(next, chunks, None)
            while pending is not None:
                following = await asyncio.to_thread(next, chunks, None)
                length = pending.start + pending.length
                if following is None:
                    break  # the last chunk goes in with the switch
                async with self._write_lock:
                    await writer.execute(insert, row(pending))
                pending = following
            last = pending

            async def switch(conn: aiosqlite.Connection) -> None:
                if last is not None:
                    await conn.execute(insert, row(last))
                await conn.execute(
                    "INSERT INTO outputs "
                    "(run_num, output_id, gen, length, original_length, content_type) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_num, output_id) DO UPDATE SET "
                    "gen = excluded.gen, length = excluded.length, "
                    "original_length = excluded.original_length, "
                    "content_type = excluded.content_type",
                    (num, output_id, gen, length, original_length, content_type),
                )
                await conn.execute(
                    "DELETE FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen != ?",
                    (num, output_id, gen),
                )

            await self._transaction(switch)
        except BaseException:
            await asyncio.shield(self._drop_staged(num, output_id, gen))
            raise
        finally:
            del self._staging[key]
            _close_quietly(chunks)
        return {
            "output_id": output_id,
            "length": length,
            "original_length": original_length,
            "content_type": content_type,
        }

    @staticmethod
    def prepare_small_output(run_id: str, output_id: str, data: bytes, max_bytes: int | None = None,
                             *, content_type: str = DEFAULT_CONTENT_TYPE) -> SmallOutput:
        """Compresses an output held in memory, for `write(outputs=...)`; CPU-bound, call it in a thread."""
        chunks = list(out.compress_chunks(out.pieces_of_bytes(data, max_bytes)))
        length = chunks[-1].start + chunks[-1].length if chunks else 0
        return SmallOutput(_num(run_id), output_id, chunks, length, len(data), content_type)

    async def _drop_staged(self, num: int, output_id: str, gen: int) -> None:
        writer = self._need_writer()
        async with self._write_lock:
            await writer.execute(
                "DELETE FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen = ? "
                "AND gen IS NOT (SELECT gen FROM outputs WHERE run_num = ? AND output_id = ?)",
                (num, output_id, gen, num, output_id),
            )

    async def list_outputs(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT output_id, length, original_length, content_type FROM outputs "
            "WHERE run_num = ? ORDER BY output_id",
            (_num(run_id),),
        )
        return [
            {"output_id": oid, "length": n, "original_length": orig, "content_type": ct}
            for oid, n, orig, ct in rows
        ]

    async def get_output(
        self, run_id: str, output_id: str, start: int = 0, end: int | None = None
    ) -> bytes | None:
        """Bytes [start, end) of the stored output (clamped to its length); None if the
        run has no such output. Only the chunks the range touches are decompressed."""
        if start < 0 or (end is not None and end < 0):
            raise ValueError("output offsets must not be negative")
        num = _num(run_id)
        async with self._snapshot() as conn:
            rows = list(
                await conn.execute_fetchall(
                    "SELECT gen, length FROM outputs WHERE run_num = ? AND output_id = ?",
                    (num, output_id),
                )
            )
            if not rows:
                return None
            gen, length = rows[0]
            stop = length if end is None else min(end, length)
            if start >= stop:
                return b""
            chunks = list(
                await conn.execute_fetchall(
                    "SELECT start, data FROM output_chunks "
                    "WHERE run_num = ? AND output_id = ? AND gen = ? "
                    "AND start < ? AND start + length > ? ORDER BY chunk_no",
                    (num, output_id, gen, stop, start),
                )
            )
        return await asyncio.to_thread(
            out.decompress_range, [(s, d) for s, d in chunks], start, stop
        )

    # ------------------------------------------------------------------ maintenance

    async def check(self) -> list[str]:
        """Problems found (empty if none): SQLite integrity, foreign keys, the run
        counters, and output chunks left by an interrupted store. Reads every page."""
        problems: list[str] = []
        for (line,) in await self._read("PRAGMA integrity_check"):
            if line != "ok":
                problems.append(f"integrity: {line}")
        for table, rowid, parent, _ in await self._read("PRAGMA foreign_key_check"):
            problems.append(f"foreign key: {table} row {rowid} points to a missing {parent} row")
        counted = {
            state: n
            for state, n in await self._read("SELECT state, count(*) FROM runs GROUP BY state")
        }
        kept = {s: n for s, n in await self._read("SELECT state, n FROM run_counts") if n}
        if counted != kept:
            problems.append(f"run counts: counters say {kept}, the runs table has {counted}")
        orphans = await self._orphan_chunks()
        if orphans:
            problems.append(
                f"{len(orphans)} output(s) have chunks left by an interrupted store; "
                "`apsisctl db vacuum` removes them"
            )
        return problems

    async def _orphan_chunks(self) -> list[tuple[int, str, int]]:
        rows = await self._read(
            "SELECT DISTINCT c.run_num, c.output_id, c.gen FROM output_chunks c "
            "WHERE c.gen IS NOT (SELECT o.gen FROM outputs o "
            "WHERE o.run_num = c.run_num AND o.output_id = c.output_id)"
        )
        return [(num, oid, gen) for num, oid, gen in rows if self._staging.get((num, oid)) != gen]

    async def vacuum(self) -> None:
        """Drops leftovers of interrupted output stores and rebuilds the file compactly.
        Blocks writes while it runs: a maintenance command, not a daemon task."""
        writer = self._need_writer()
        for num, oid, gen in await self._orphan_chunks():
            await self._drop_staged(num, oid, gen)
        async with self._write_lock:
            await writer.execute("VACUUM")
            await writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def stats(self) -> dict[str, Any]:
        """Sizes and counts for `/control/stats` and `apsisctl db check`; no full scans."""
        by_state = {s.value: 0 for s in State}
        async with self._snapshot() as conn:
            for state, n in await conn.execute_fetchall("SELECT state, n FROM run_counts"):
                by_state[state] = n
            ((page_size,),) = await conn.execute_fetchall("PRAGMA page_size")
            ((page_count,),) = await conn.execute_fetchall("PRAGMA page_count")
            ((freelist,),) = await conn.execute_fetchall("PRAGMA freelist_count")
            ((events,),) = await conn.execute_fetchall("SELECT count(*) FROM events")
            first_retained = await _first_retained_seq(conn)
            last = await _last_seq(conn)
        wal = Path(self.path + "-wal")
        return {
            "path": self.path,
            "schema_version": schema.SCHEMA_VERSION,
            "file_bytes": page_size * page_count,
            "wal_bytes": wal.stat().st_size if wal.exists() else 0,
            "free_bytes": page_size * freelist,
            "runs": sum(by_state.values()),
            "runs_by_state": by_state,
            "events": events,
            "first_retained_seq": first_retained,
            "last_seq": last,
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
                (cut, json_list(_FINISHED)),
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
                                (cut, json_list(_FINISHED), chunk),
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


# ---------------------------------------------------------------------- helpers

_UPSERT_RUN = """
INSERT INTO runs (run_num, job_id, state, sort_time, jobdef_id, run)
VALUES (?, ?, ?, ?, (SELECT jobdef_id FROM jobdefs WHERE hash = ?), ?)
ON CONFLICT (run_num) DO UPDATE SET
    job_id = excluded.job_id,
    state = excluded.state,
    sort_time = excluded.sort_time,
    jobdef_id = coalesce(excluded.jobdef_id, runs.jobdef_id),
    run = excluded.run
"""


async def _last_seq(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("SELECT seq FROM sqlite_sequence WHERE name = 'events'"))
    return int(rows[0][0]) if rows else 0


async def _first_retained_seq(conn: aiosqlite.Connection) -> int:
    rows = list(await conn.execute_fetchall("SELECT min(seq) FROM events"))
    if rows and rows[0][0] is not None:
        return int(rows[0][0])
    return await _last_seq(conn) + 1


async def _probe(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> int:
    """How many runs a side filter matches, counting no further than needed."""
    rows = await conn.execute_fetchall(
        f"SELECT count(*) FROM (SELECT 1 FROM ({sql}) LIMIT {SELECTIVE + 1})", params
    )
    return int(next(iter(rows))[0])


def _num(run_id: str) -> int:
    try:
        return keys.run_num(run_id)
    except ValueError as exc:
        raise UnknownRunError(str(exc)) from None


def _prepare_runs(runs: Sequence[Run]) -> tuple[list[tuple[Any, ...]], dict[str, str], int]:
    """Rows for the runs upsert, the job definitions by hash, and the largest run number."""
    rows: list[tuple[Any, ...]] = []
    jobdefs: dict[str, str] = {}
    max_num = 0
    for run in runs:
        run_id = run.get("run_id")
        try:
            num = keys.run_num(run_id)  # type: ignore[arg-type]
            job = run.get("job")
            job_hash = None
            if job is not None:
                text = json.dumps(job, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
                job_hash = hashlib.sha256(text.encode()).hexdigest()
                jobdefs[job_hash] = text
                run = {k: v for k, v in run.items() if k != "job"}
            rows.append(
                (num, run["job_id"], str(run["state"]), run_sort_time(run), job_hash, _dumps(run))
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"run {run_id!r} cannot be stored: {exc!r}") from None
        max_num = max(max_num, num)
    return rows, jobdefs, max_num


def _prepare_log_entry(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    try:
        return (
            keys.run_num(entry["run_id"]),
            entry.get("ts") or _now_iso(),
            entry.get("state"),
            entry["message"],
        )
    except (KeyError, ValueError) as exc:
        raise StoreError(f"run log entry {entry!r} cannot be stored: {exc!r}") from None


def _event_keys(event: dict[str, Any]) -> tuple[str, str, int | None, str | None]:
    """(ts key, type, run number, job id): the columns events are filtered on."""
    if "type" not in event:
        raise StoreError(f"event without a type: {event!r}")
    ts = event.setdefault("ts", _now_iso())
    run = event.get("run")
    run = run if isinstance(run, dict) else {}
    job = event.get("job")
    job = job if isinstance(job, dict) else {}
    run_id = event.get("run_id") or run.get("run_id")
    job_id = event.get("job_id") or run.get("job_id") or job.get("job_id")
    try:
        return (
            time_key(ts),
            event["type"],
            None if run_id is None else keys.run_num(run_id),
            job_id,
        )
    except ValueError as exc:
        raise StoreError(f"event {event!r} cannot be stored: {exc}") from None


def _close_quietly(chunks: Iterator[out.Chunk]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        try:
            close()
        except ValueError:  # still running in a worker thread: it ends on its own
            pass

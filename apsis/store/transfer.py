"""Moving runs between databases row by row, whichever backend each one is.

Both schemas have the same tables and columns, so a run and what hangs off it (its job
definition, log, outputs and their chunks) can be read from one as plain rows and
written into the other. `SqliteRows` and `PgRows` are the two sides; `copy_runs` moves
a batch in one transaction of the target. Used by `apsisctl db copy` (apsis/store/copy.py)
and by the PostgreSQL store's archive, whose archive is a SQLite file.

Run ids, seqs and times are kept as they are; job definition ids are not (each database
numbers its own), so a run finds its definition through the definition's hash.
Output chunks are read one at a time: a batch of runs with large outputs is copied in
memory bounded by one chunk (CHUNK_SIZE of stored bytes, compressed).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import aiosqlite

from apsis.store import schema
from apsis.store.keys import json_list
from apsis.store.lock import DatabaseLock

if TYPE_CHECKING:
    import asyncpg  # type: ignore[import-untyped]


class RunRow(NamedTuple):
    run_num: int
    job_id: str
    state: str
    sort_time: str
    job_hash: str | None
    job: str | None
    run: str


class Rows(Protocol):
    """One database as rows: what a copy reads from a source and writes into a target."""

    name: str

    async def count(self, table: str) -> int: ...
    async def run_nums_after(self, after: int, limit: int) -> list[int]: ...
    async def runs(self, nums: Sequence[int]) -> list[RunRow]: ...
    async def run_texts(self, nums: Sequence[int]) -> dict[int, str]: ...
    async def logs(self, nums: Sequence[int]) -> list[tuple[Any, ...]]: ...
    async def outputs(self, nums: Sequence[int]) -> list[tuple[Any, ...]]: ...
    async def chunk_nos(self, num: int, output_id: str, gen: int) -> list[int]: ...
    async def chunk(self, num: int, output_id: str, gen: int, chunk_no: int) -> tuple[Any, ...]: ...
    async def events_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]: ...
    async def max_seq(self) -> int: ...
    async def meta(self) -> dict[str, str]: ...
    def transaction(self) -> contextlib.AbstractAsyncContextManager[None]: ...
    async def delete_runs(self, nums: Sequence[int]) -> None: ...
    async def put_runs(self, rows: Sequence[RunRow]) -> None: ...
    async def put_logs(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    async def put_output(self, row: tuple[Any, ...]) -> None: ...
    async def put_chunk(self, row: tuple[Any, ...]) -> None: ...
    async def put_events(self, rows: Sequence[tuple[Any, ...]]) -> None: ...
    async def put_meta(self, meta: dict[str, str]) -> None: ...


# The tables `count` knows, each counted as a copy must reproduce it: only the chunks
# of the current version of each output (a stale one is not copied), and only the job
# definitions some run uses.
_COUNTS = {
    "runs": "SELECT count(*) FROM runs",
    "run_log": "SELECT count(*) FROM run_log",
    "outputs": "SELECT count(*) FROM outputs",
    "output_chunks": "SELECT count(*) FROM output_chunks c JOIN outputs o ON o.run_num = "
                     "c.run_num AND o.output_id = c.output_id AND o.gen = c.gen",
    "jobdefs": "SELECT count(DISTINCT jobdef_id) FROM runs",
    "events": "SELECT count(*) FROM events",
}
_META_KEYS = "key IN ('clock', 'next_run_num') OR key LIKE 'clock:%'"


class SqliteRows:
    """A SQLite database as rows, on a connection in autocommit mode."""

    def __init__(self, conn: aiosqlite.Connection, name: str) -> None:
        self.conn = conn
        self.name = name

    async def _all(self, sql: str, *params: Any) -> list[Any]:
        return list(await self.conn.execute_fetchall(sql, params))

    async def count(self, table: str) -> int:
        return int((await self._all(_COUNTS[table]))[0][0])

    async def run_nums_after(self, after: int, limit: int) -> list[int]:
        rows = await self._all(
            "SELECT run_num FROM runs WHERE run_num > ? ORDER BY run_num LIMIT ?", after, limit)
        return [num for (num,) in rows]

    async def runs(self, nums: Sequence[int]) -> list[RunRow]:
        rows = await self._all(
            "SELECT r.run_num, r.job_id, r.state, r.sort_time, j.hash, j.job, r.run FROM runs r "
            "LEFT JOIN jobdefs j ON j.jobdef_id = r.jobdef_id "
            "WHERE r.run_num IN (SELECT value FROM json_each(?)) ORDER BY r.run_num",
            json_list(nums))
        return [RunRow(*row) for row in rows]

    async def run_texts(self, nums: Sequence[int]) -> dict[int, str]:
        rows = await self._all(
            "SELECT run_num, run FROM runs WHERE run_num IN (SELECT value FROM json_each(?))",
            json_list(nums))
        return {num: text for num, text in rows}

    async def logs(self, nums: Sequence[int]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._all(
            "SELECT run_num, ts, state, message FROM run_log "
            "WHERE run_num IN (SELECT value FROM json_each(?)) ORDER BY entry_id",
            json_list(nums))]

    async def outputs(self, nums: Sequence[int]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._all(
            "SELECT run_num, output_id, gen, length, original_length, content_type FROM outputs "
            "WHERE run_num IN (SELECT value FROM json_each(?))", json_list(nums))]

    async def chunk_nos(self, num: int, output_id: str, gen: int) -> list[int]:
        rows = await self._all(
            "SELECT chunk_no FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen = ? "
            "ORDER BY chunk_no", num, output_id, gen)
        return [n for (n,) in rows]

    async def chunk(self, num: int, output_id: str, gen: int, chunk_no: int) -> tuple[Any, ...]:
        rows = await self._all(
            "SELECT run_num, output_id, gen, chunk_no, start, length, data FROM output_chunks "
            "WHERE run_num = ? AND output_id = ? AND gen = ? AND chunk_no = ?",
            num, output_id, gen, chunk_no)
        return tuple(rows[0])

    async def events_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self._all(
            "SELECT seq, ts, type, run_num, job_id, event FROM events WHERE seq > ? "
            "ORDER BY seq LIMIT ?", seq, limit)]

    async def max_seq(self) -> int:
        return int((await self._all("SELECT coalesce(max(seq), 0) FROM events"))[0][0])

    async def meta(self) -> dict[str, str]:
        meta = {k: str(v) for k, v in await self._all(f"SELECT key, value FROM meta WHERE {_META_KEYS}")}
        rows = await self._all("SELECT seq FROM sqlite_sequence WHERE name = 'events'")
        meta["last_seq"] = str(rows[0][0] if rows else 0)
        return meta

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        await self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                await self.conn.execute("ROLLBACK")
            raise
        await self.conn.execute("COMMIT")

    async def delete_runs(self, nums: Sequence[int]) -> None:
        """Deletes runs (cascading) and the job definitions no run uses any more."""
        in_nums = "run_num IN (SELECT value FROM json_each(?))"
        used = await self._all(
            f"SELECT DISTINCT jobdef_id FROM runs WHERE {in_nums} AND jobdef_id IS NOT NULL",
            json_list(nums))
        await self.conn.execute(f"DELETE FROM runs WHERE {in_nums}", (json_list(nums),))
        await self.conn.execute(
            "DELETE FROM jobdefs WHERE jobdef_id IN (SELECT value FROM json_each(?)) "
            "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.jobdef_id = jobdefs.jobdef_id)",
            (json_list(j for (j,) in used),))

    async def put_runs(self, rows: Sequence[RunRow]) -> None:
        await self.conn.executemany(
            "INSERT OR IGNORE INTO jobdefs (hash, job) VALUES (?, ?)",
            [(r.job_hash, r.job) for r in rows if r.job_hash is not None])
        await self.conn.executemany(
            "INSERT INTO runs (run_num, job_id, state, sort_time, jobdef_id, run) "
            "VALUES (?, ?, ?, ?, (SELECT jobdef_id FROM jobdefs WHERE hash = ?), ?)",
            [(r.run_num, r.job_id, r.state, r.sort_time, r.job_hash, r.run) for r in rows])

    async def put_logs(self, rows: Sequence[tuple[Any, ...]]) -> None:
        await self.conn.executemany(
            "INSERT INTO run_log (run_num, ts, state, message) VALUES (?, ?, ?, ?)", rows)

    async def put_output(self, row: tuple[Any, ...]) -> None:
        await self.conn.execute(
            "INSERT INTO outputs (run_num, output_id, gen, length, original_length, content_type) "
            "VALUES (?, ?, ?, ?, ?, ?)", row)

    async def put_chunk(self, row: tuple[Any, ...]) -> None:
        await self.conn.execute(
            "INSERT INTO output_chunks (run_num, output_id, gen, chunk_no, start, length, data) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)", row)

    async def put_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        await self.conn.executemany(
            "INSERT INTO events (seq, ts, type, run_num, job_id, event) VALUES (?, ?, ?, ?, ?, ?)",
            rows)

    async def put_meta(self, meta: dict[str, str]) -> None:
        """Clocks as given; run ids and seqs only ever move forward."""
        for key, value in meta.items():
            if key == "last_seq":
                await self.conn.execute(
                    "INSERT INTO sqlite_sequence (name, seq) SELECT 'events', 0 WHERE NOT EXISTS "
                    "(SELECT 1 FROM sqlite_sequence WHERE name = 'events')")
                await self.conn.execute(
                    "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'events'", (int(value),))
            elif key == "next_run_num":
                await self.conn.execute(
                    "UPDATE meta SET value = max(value, ?) WHERE key = 'next_run_num'", (int(value),))
            else:
                await self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES (?, ?) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))


class PgRows:
    """A PostgreSQL database as rows, on one asyncpg connection."""

    def __init__(self, conn: asyncpg.Connection, name: str = "") -> None:
        self.conn = conn
        self.name = name

    async def count(self, table: str) -> int:
        return int(await self.conn.fetchval(_COUNTS[table]))

    async def run_nums_after(self, after: int, limit: int) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT run_num FROM runs WHERE run_num > $1 ORDER BY run_num LIMIT $2", after, limit)
        return [num for (num,) in rows]

    async def runs(self, nums: Sequence[int]) -> list[RunRow]:
        rows = await self.conn.fetch(
            "SELECT r.run_num, r.job_id, r.state, r.sort_time, j.hash, j.job, r.run FROM runs r "
            "LEFT JOIN jobdefs j ON j.jobdef_id = r.jobdef_id WHERE r.run_num = ANY($1) "
            "ORDER BY r.run_num", list(nums))
        return [RunRow(*row) for row in rows]

    async def run_texts(self, nums: Sequence[int]) -> dict[int, str]:
        rows = await self.conn.fetch(
            "SELECT run_num, run FROM runs WHERE run_num = ANY($1)", list(nums))
        return {num: text for num, text in rows}

    async def logs(self, nums: Sequence[int]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.conn.fetch(
            "SELECT run_num, ts, state, message FROM run_log WHERE run_num = ANY($1) "
            "ORDER BY entry_id", list(nums))]

    async def outputs(self, nums: Sequence[int]) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.conn.fetch(
            "SELECT run_num, output_id, gen, length, original_length, content_type FROM outputs "
            "WHERE run_num = ANY($1)", list(nums))]

    async def chunk_nos(self, num: int, output_id: str, gen: int) -> list[int]:
        rows = await self.conn.fetch(
            "SELECT chunk_no FROM output_chunks WHERE run_num = $1 AND output_id = $2 "
            "AND gen = $3 ORDER BY chunk_no", num, output_id, gen)
        return [n for (n,) in rows]

    async def chunk(self, num: int, output_id: str, gen: int, chunk_no: int) -> tuple[Any, ...]:
        row = await self.conn.fetchrow(
            "SELECT run_num, output_id, gen, chunk_no, start, length, data FROM output_chunks "
            "WHERE run_num = $1 AND output_id = $2 AND gen = $3 AND chunk_no = $4",
            num, output_id, gen, chunk_no)
        return tuple(row)

    async def events_after(self, seq: int, limit: int) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.conn.fetch(
            "SELECT seq, ts, type, run_num, job_id, event FROM events WHERE seq > $1 "
            "ORDER BY seq LIMIT $2", seq, limit)]

    async def max_seq(self) -> int:
        return int(await self.conn.fetchval("SELECT coalesce(max(seq), 0) FROM events"))

    async def meta(self) -> dict[str, str]:
        rows = await self.conn.fetch(
            f"SELECT key, value FROM meta WHERE {_META_KEYS} OR key = 'last_seq'")
        return {k: v for k, v in rows}

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        async with self.conn.transaction():
            yield

    async def delete_runs(self, nums: Sequence[int]) -> None:
        """Deletes runs (cascading) and the job definitions no run uses any more."""
        used = await self.conn.fetch(
            "SELECT DISTINCT jobdef_id FROM runs WHERE run_num = ANY($1) AND jobdef_id IS NOT NULL",
            list(nums))
        await self.conn.execute("DELETE FROM runs WHERE run_num = ANY($1)", list(nums))
        await self.conn.execute(
            "DELETE FROM jobdefs WHERE jobdef_id = ANY($1) "
            "AND NOT EXISTS (SELECT 1 FROM runs r WHERE r.jobdef_id = jobdefs.jobdef_id)",
            [j for (j,) in used])

    async def put_runs(self, rows: Sequence[RunRow]) -> None:
        defs = [(r.job_hash, r.job) for r in rows if r.job_hash is not None]
        if defs:
            await self.conn.executemany(
                "INSERT INTO jobdefs (hash, job) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING", defs)
        await self.conn.executemany(
            "INSERT INTO runs (run_num, job_id, state, sort_time, jobdef_id, run) "
            "VALUES ($1, $2, $3, $4, (SELECT jobdef_id FROM jobdefs WHERE hash = $5), $6)",
            [(r.run_num, r.job_id, r.state, r.sort_time, r.job_hash, r.run) for r in rows])

    async def put_logs(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            await self.conn.executemany(
                "INSERT INTO run_log (run_num, ts, state, message) VALUES ($1, $2, $3, $4)", rows)

    async def put_output(self, row: tuple[Any, ...]) -> None:
        await self.conn.execute(
            "INSERT INTO outputs (run_num, output_id, gen, length, original_length, content_type) "
            "VALUES ($1, $2, $3, $4, $5, $6)", *row)

    async def put_chunk(self, row: tuple[Any, ...]) -> None:
        await self.conn.execute(
            "INSERT INTO output_chunks (run_num, output_id, gen, chunk_no, start, length, data) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7)", *row)

    async def put_events(self, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            await self.conn.executemany(
                "INSERT INTO events (seq, ts, type, run_num, job_id, event) "
                "VALUES ($1, $2, $3, $4, $5, $6)", rows)

    async def put_meta(self, meta: dict[str, str]) -> None:
        """Clocks as given; run ids and seqs only ever move forward."""
        for key, value in meta.items():
            if key in ("last_seq", "next_run_num"):
                await self.conn.execute(
                    "UPDATE meta SET value = greatest(value::bigint, $2)::text "
                    "WHERE key = $1", key, int(value))
            else:
                await self.conn.execute(
                    "INSERT INTO meta (key, value) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value", key, str(value))


async def copy_runs(source: Rows, target: Rows, rows: Sequence[RunRow]) -> None:
    """Copies runs (with their definitions, logs and current outputs) into `target` in
    one transaction there, replacing whatever `target` had of them."""
    if not rows:
        return
    nums = [row.run_num for row in rows]
    logs = await source.logs(nums)
    outputs = await source.outputs(nums)
    async with target.transaction():
        await target.delete_runs(nums)
        await target.put_runs(rows)
        await target.put_logs(logs)
        for output in outputs:
            num, output_id, gen = output[:3]
            await target.put_output(output)
            for chunk_no in await source.chunk_nos(num, output_id, gen):
                await target.put_chunk(await source.chunk(num, output_id, gen, chunk_no))


@contextlib.asynccontextmanager
async def open_archive(path: str) -> AsyncIterator[SqliteRows]:
    """The archive file as a target: locked, created or migrated, durable commits."""
    lock = DatabaseLock(path)
    lock.acquire()
    try:
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = FULL")
            await conn.execute("PRAGMA foreign_keys = ON")
            await schema.apply_migrations(conn)
            yield SqliteRows(conn, path)
        finally:
            await conn.close()
    finally:
        lock.release()

"""The PostgreSQL store (asyncpg): the same methods and semantics as the SQLite `Store`.

The rows are the same as SQLite's (the row builders are shared with apsis/store/store.py)
and so are the queries (apsis/store/query.py builds both). What differs is how the
database is reached:
- One writer connection, every write under an asyncio lock, like SQLite's single
  writer. It holds a session advisory lock, so a second daemon on the same database is
  refused as it is on a SQLite file (the kernel of leader election: the lock dies with
  the connection, even by `kill -9` or a network cut).
- Reads go through a small pool of read-only connections; a read that must be
  consistent (a page and its seq) is one REPEATABLE READ transaction.
- Event seqs are taken from the `last_seq` row of `meta` inside the write transaction:
  the row lock orders concurrent writers, so seqs are strictly increasing and gapless in
  commit order (pg_schema.py says why not a SEQUENCE).
- Several daemons may share one database (SPEC §1.14): opened with `elect=True`, the
  store writes nothing until `try_lead` wins the daemon lock and raises the fencing
  `epoch` of the `cluster` row; every write transaction then checks that epoch first,
  so a leader that lost its lock cannot commit after another took over (`FencedError`).
  Each write with events ends with a NOTIFY, which standbys LISTEN to (`watch_events`).
- Commits are durable when they return (`synchronous_commit` as the server sets it,
  `on` by default), like SQLite's `synchronous=FULL`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import json
import logging
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

import asyncpg  # type: ignore[import-untyped]

from apsis.model.states import FINISHED, UNFINISHED, State
from apsis.store import keys, pg_schema, transfer
from apsis.store import outputs as out
from apsis.store.errors import StoreError, StoreLockedError
from apsis.store.keys import encode_cursor, time_key
from apsis.store.query import SELECTIVE, RunQuery, numbered
from apsis.store.store import (
    DEFAULT_CONTENT_TYPE,
    SUMMARY_OMITS,
    RunPage,
    SmallOutput,
    SummaryPage,
    _event_keys,
    _num,
    _prepare_log_entry,
    _prepare_runs,
)

log = logging.getLogger("apsis.store")

Run = dict[str, Any]
ProgressCallback = Callable[[int, int], None]

_TRIM_BATCH = 10_000
_READERS = 4
_CONNECT_TIMEOUT = 10.0
_FINISHED = sorted(s.value for s in FINISHED)
_UNFINISHED = sorted(s.value for s in UNFINISHED)

EVENTS_CHANNEL = "apsis_events"


class FencedError(StoreError):
    """This daemon is not (or no longer) the leader: its write was refused, nothing of it
    committed."""


def display_url(url: str) -> str:
    """The URL without its password: what messages, logs and stats show."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = urllib.parse.quote(parts.username or "", safe="")
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def application_name() -> str:
    """How this process shows in pg_stat_activity, and in a 'database in use' message."""
    return f"apsis {socket.gethostname()} pid {os.getpid()}"[:63]


async def connect(url: str, *, readonly: bool = False,
                  settings: Mapping[str, str] | None = None) -> asyncpg.Connection:
    """One connection, with errors that say what to fix (password, database, server);
    `settings` are more server settings of the session."""
    settings = {**(settings or {}), "application_name": application_name()}
    if readonly:
        settings["default_transaction_read_only"] = "on"
    try:
        return await asyncpg.connect(url, timeout=_CONNECT_TIMEOUT, server_settings=settings)
    except BaseException as exc:
        raise connect_error(url, exc) from None


def connect_error(url: str, exc: BaseException) -> BaseException:
    shown = display_url(url)
    if isinstance(exc, asyncpg.InvalidCatalogNameError):
        return StoreError(f"cannot connect to {shown}: {exc}; create it first "
                          "(createdb, or CREATE DATABASE as its owner)")
    if isinstance(exc, asyncpg.InvalidAuthorizationSpecificationError | asyncpg.InvalidPasswordError):
        return StoreError(f"cannot connect to {shown}: {exc}; give the password in the URL, "
                          "PGPASSWORD or ~/.pgpass")
    if isinstance(exc, OSError | TimeoutError | asyncpg.PostgresError | asyncpg.InterfaceError
                  | ValueError):
        return StoreError(f"cannot connect to {shown}: {exc or type(exc).__name__}")
    return exc


async def take_daemon_lock(conn: asyncpg.Connection, shown: str) -> None:
    """The lock a daemon (or a maintenance command) holds while it writes; refused with
    the holder's name when another process has it."""
    if await conn.fetchval("SELECT pg_try_advisory_lock($1)", pg_schema.DAEMON_LOCK):
        return
    holder = await conn.fetchval(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
        "(SELECT oid FROM pg_database WHERE datname = current_database()) "
        "AND (l.classid::bigint << 32 | l.objid::bigint) = $1 LIMIT 1",
        pg_schema.DAEMON_LOCK,
    )
    raise StoreLockedError(shown, None, holder=holder or None)


class PgStore:
    """The database of one Apsis daemon in PostgreSQL. Open with `await PgStore.open(url)`."""

    def __init__(self, url: str, pool: asyncpg.Pool, writer: asyncpg.Connection | None,
                 *, elect: bool = False) -> None:
        self.url = url
        self.path = display_url(url)
        self._pool = pool
        self._writer = writer
        self._write_lock = asyncio.Lock()
        # (run_num, output_id) -> gen of outputs being written right now.
        self._staging: dict[tuple[int, str], int] = {}
        self._closed = False
        self._elect = elect
        self.epoch: int | None = None  # set while this store leads (elect=True)

    # ------------------------------------------------------------------ open/close

    @classmethod
    async def open(cls, url: str, *, create: bool = True, readonly: bool = False,
                   elect: bool = False, takeover: float = 10.0) -> PgStore:
        """Connects (and, unless readonly, locks and migrates) the database at `url`.

        Raises `StoreLockedError` if another daemon holds it. With `elect` it is not
        locked yet: it writes once `try_lead` has made it the leader, and the server ends
        its session within about `takeover` seconds of losing touch with it (TCP
        keepalives), so that the lock comes free for a standby.
        """
        shown = display_url(url)
        writer: asyncpg.Connection | None = None
        pool: asyncpg.Pool | None = None
        try:
            if not readonly:
                writer = await connect(url, settings=_keepalives(takeover) if elect else None)
                if not elect:
                    await take_daemon_lock(writer, shown)
                if create or await pg_schema.read_version(writer):
                    await pg_schema.apply_migrations(writer)
            try:
                pool = await asyncpg.create_pool(
                    url, min_size=1, max_size=_READERS, timeout=_CONNECT_TIMEOUT,
                    reset=_keep_session,
                    server_settings={"application_name": application_name(),
                                     "default_transaction_read_only": "on"})
            except BaseException as exc:
                raise connect_error(url, exc) from None
            version = await pg_schema.read_version(pool)  # type: ignore[arg-type]
            if version == 0:
                raise StoreError(f"no Apsis database at {shown} (`apsisctl db migrate` creates one)")
            if version != pg_schema.SCHEMA_VERSION:
                raise StoreError(
                    f"database {shown} has schema version {version}, this Apsis needs "
                    f"{pg_schema.SCHEMA_VERSION}: run `apsisctl db migrate`"
                )
            return cls(url, pool, writer, elect=elect)
        except BaseException:
            if pool is not None:
                await pool.close()
            if writer is not None:
                await writer.close()  # ends the session: its advisory lock goes with it
            raise

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            async with self._write_lock:
                if self._writer is not None:
                    await self._writer.close()
        finally:
            await self._pool.close()

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
            return await pg_schema.apply_migrations(writer)

    # ------------------------------------------------------------------ plumbing

    def _need_writer(self) -> asyncpg.Connection:
        if self._writer is None:
            raise StoreError(f"database {self.path} is open read-only")
        if self._elect and self.epoch is None:
            raise FencedError(f"this daemon is a standby on {self.path}: only the leader writes")
        return self._writer

    # ------------------------------------------------------------------ leadership

    async def try_lead(self, node: str, advertise: str | None) -> int | None:
        """Takes the daemon lock if it is free, and with it a new epoch; returns the
        epoch, or None while another daemon leads. The lock lives as long as the writer
        connection: its end (crash, kill -9, network cut) lets a standby take over."""
        writer = self._writer
        assert writer is not None and self._elect
        async with self._write_lock:
            if not await writer.fetchval("SELECT pg_try_advisory_lock($1)", pg_schema.DAEMON_LOCK):
                return None
            self.epoch = int(await writer.fetchval(
                "UPDATE cluster SET epoch = epoch + 1, leader = $1, advertise = $2, "
                "heartbeat = now() RETURNING epoch", node, advertise))
        return self.epoch

    async def heartbeat(self) -> None:
        """Records that the leader is alive; raises if it is not the leader any more
        (`FencedError`) or its connection is gone."""
        async def body(conn: asyncpg.Connection) -> None:
            await conn.execute("UPDATE cluster SET heartbeat = now()")

        await self._transaction(body)

    async def cluster(self) -> dict[str, Any]:
        """The `cluster` row: epoch, leader (node name), advertise (URL), heartbeat; and
        `nodes`: the Apsis processes connected to the database (this one left out), by
        application name, `leader` for the one holding the daemon lock."""
        row = await self._pool.fetchrow("SELECT epoch, leader, advertise, heartbeat FROM cluster")
        nodes = await self._pool.fetch(
            "SELECT a.application_name AS name, min(a.backend_start) AS since, "
            "bool_or(l.pid IS NOT NULL) AS leader FROM pg_stat_activity a "
            "LEFT JOIN pg_locks l ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted "
            "AND l.objid = $1 AND l.objsubid = 1 "
            "WHERE a.datname = current_database() AND a.application_name LIKE 'apsis %' "
            "AND a.application_name <> $2 GROUP BY a.application_name ORDER BY since",
            pg_schema.DAEMON_LOCK & 0xFFFFFFFF, application_name())
        return {**dict(row), "nodes": [dict(n) for n in nodes]}

    async def watch_events(self, changed: Callable[[], None], *,
                           retry: float = 1.0) -> None:
        """Calls `changed` at each NOTIFY of new events, and once after every (re)connect so
        that a NOTIFY missed while disconnected loses nothing. Runs until cancelled."""
        while True:
            try:
                await self._listen(changed, retry * 5)
            except StoreError as exc:
                log.warning("cannot listen for events: %s; retrying", exc)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                log.warning("lost the event listener's connection: %s; reconnecting", exc)
            await asyncio.sleep(retry)

    async def _listen(self, changed: Callable[[], None], probe_every: float) -> None:
        """One connection's LISTEN, until the connection is lost."""
        conn = await connect(self.url, readonly=True)
        lost = asyncio.Event()
        try:
            conn.add_termination_listener(lambda _conn: lost.set())
            await conn.add_listener(EVENTS_CHANNEL, lambda *_args: changed())
            changed()
            while not lost.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lost.wait(), probe_every)
                if not lost.is_set():
                    await conn.fetchval("SELECT 1")  # notices a dead connection
        finally:
            conn.terminate()

    async def _read(self, sql: str, *params: Any) -> list[asyncpg.Record]:
        return await self._pool.fetch(sql, *params)

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        """One read transaction: the statements run inside it see the same snapshot."""
        async with self._pool.acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True
        ):
            yield conn

    async def read_problem(self, timeout: float = 5.0) -> str | None:
        """Why the database cannot be read right now, or None: what `/alive` reports."""

        async def probe() -> None:
            async with self._snapshot() as conn:
                await conn.fetchval("SELECT value FROM meta WHERE key = 'last_seq'")

        try:
            await asyncio.wait_for(probe(), timeout)
        except TimeoutError:
            return f"reading the database {self.path} took over {timeout:g}s"
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            return f"cannot read the database {self.path}: {exc}"
        return None

    async def _transaction(
        self,
        body: Callable[[asyncpg.Connection], Any],
        *,
        committed: Callable[[Any], None] | None = None,
        failed: Callable[[], None] | None = None,
    ) -> Any:
        """Runs `body` in one write transaction; cancelling the caller does not cut it
        in half (it finishes, committed or rolled back, and the callbacks run)."""
        writer = self._need_writer()

        epoch = self.epoch

        async def run() -> Any:
            async with self._write_lock:
                try:
                    async with writer.transaction():
                        if epoch is not None:
                            await _check_epoch(writer, epoch, self.path)
                        result = await body(writer)
                except asyncpg.IntegrityConstraintViolationError as exc:
                    if failed is not None:
                        failed()
                    raise StoreError(f"write refused by the database: {exc}") from exc
                except BaseException:
                    if failed is not None:
                        failed()
                    raise
                if committed is not None:
                    committed(result)
                return result

        return await asyncio.shield(asyncio.ensure_future(run()))

    # ------------------------------------------------------------------ run ids, clock

    async def allocate_run_ids(self, n: int = 1) -> list[str]:
        """`n` new run ids, strictly increasing and never handed out again."""
        if n < 1:
            return []

        async def body(conn: asyncpg.Connection) -> int:
            return int(await conn.fetchval(
                "UPDATE meta SET value = (value::bigint + $1)::text "
                "WHERE key = 'next_run_num' RETURNING value", n))

        end = await self._transaction(body)
        return [keys.run_id(num) for num in range(end - n, end)]

    async def get_clock(self) -> str | None:
        """The time up to which schedules have been processed, as last set."""
        return await self._pool.fetchval("SELECT value FROM meta WHERE key = 'clock'")

    async def get_schedule_clocks(self) -> dict[str, str]:
        """Schedules expanded only up to an earlier time than the clock: key → that time."""
        rows = await self._read("SELECT key, value FROM meta WHERE key LIKE 'clock:%'")
        return {key.removeprefix("clock:"): value for key, value in rows}

    async def set_clock(self, time: str | dt.datetime) -> None:
        value = time.isoformat() if isinstance(time, dt.datetime) else time

        async def body(conn: asyncpg.Connection) -> None:
            await conn.execute(_SET_META, "clock", value)

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
        """Records runs, run log entries, events, clocks and small outputs in one
        transaction; each event gets the next seq, set into the dict and returned."""
        run_rows, jobdefs, max_num = _prepare_runs(runs)
        log_rows = [_prepare_log_entry(entry) for entry in log_entries]
        event_meta = [_event_keys(event) for event in events]
        clock_value = clock.isoformat() if isinstance(clock, dt.datetime) else clock

        async def body(conn: asyncpg.Connection) -> list[int]:
            seqs: list[int] = []
            if events:
                last = int(await conn.fetchval(
                    "UPDATE meta SET value = (value::bigint + $1)::text "
                    "WHERE key = 'last_seq' RETURNING value", len(events)))
                seqs = list(range(last - len(events) + 1, last + 1))
            event_rows = []
            for seq, event, (ts, type_, num, job_id) in zip(seqs, events, event_meta):
                event["seq"] = seq
                event_rows.append((seq, ts, type_, num, job_id, _dumps(event)))
            if jobdefs:
                await conn.executemany(
                    "INSERT INTO jobdefs (hash, job) VALUES ($1, $2) ON CONFLICT (hash) DO NOTHING",
                    list(jobdefs.items()))
            if run_rows:
                await conn.executemany(_UPSERT_RUN, run_rows)
                await conn.execute(
                    "UPDATE meta SET value = greatest(value::bigint, $1)::text "
                    "WHERE key = 'next_run_num'", max_num + 1)
            if log_rows:
                await conn.executemany(
                    "INSERT INTO run_log (run_num, ts, state, message) VALUES ($1, $2, $3, $4)",
                    log_rows)
            if event_rows:
                await conn.executemany(
                    "INSERT INTO events (seq, ts, type, run_num, job_id, event) "
                    "VALUES ($1, $2, $3, $4, $5, $6)", event_rows)
            for output in outputs:
                await _write_small_output(conn, output)
            if clock_value is not None:
                await conn.execute(_SET_META, "clock", clock_value)
            for key, value in (schedule_clocks or {}).items():
                if value is None:
                    await conn.execute("DELETE FROM meta WHERE key = $1", f"clock:{key}")
                else:
                    await conn.execute(_SET_META, f"clock:{key}", value)
            if seqs:  # delivered at commit, to the standbys' LISTEN
                await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, str(seqs[-1]))
            return seqs

        def failed() -> None:
            for event in events:
                event.pop("seq", None)

        return await self._transaction(body, failed=failed)

    # ------------------------------------------------------------------ run reads

    async def get_run(self, run_id: str) -> Run | None:
        text = await self._pool.fetchval("SELECT run FROM runs WHERE run_num = $1", _num(run_id))
        return None if text is None else json.loads(text)

    async def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs that exist among `run_ids`, in the order asked."""
        nums = [_num(r) for r in run_ids]
        rows = await self._read("SELECT run_num, run FROM runs WHERE run_num = ANY($1)", nums)
        by_num = {num: text for num, text in rows}
        return [json.loads(by_num[n]) for n in nums if n in by_num]

    async def get_run_job(self, run_id: str) -> dict[str, Any] | None:
        """The job definition the run was bound with, if one was written with it."""
        text = await self._pool.fetchval(
            "SELECT j.job FROM runs r JOIN jobdefs j ON j.jobdef_id = r.jobdef_id "
            "WHERE r.run_num = $1", _num(run_id))
        return None if text is None else json.loads(text)

    async def load_unfinished_runs(self) -> list[Run]:
        """Every run not yet finished, oldest first: what the engine restores at start."""
        rows = await self._read(
            "SELECT run FROM runs WHERE state = ANY($1) ORDER BY sort_time, run_num", _UNFINISHED)
        return [json.loads(text) for (text,) in rows]

    async def run_log(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT ts, state, message FROM run_log WHERE run_num = $1 ORDER BY entry_id",
            _num(run_id))
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
        """Runs matching every filter given, newest first (schedule time, then run number);
        the page and its `seq` come from one snapshot (see `Store.query_runs`)."""
        query = RunQuery(limit, postgres=True)
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
            rows = await conn.fetch(query.sql(), *query.params)
            seq = await _last_seq(conn)
        runs = [json.loads(text) for _, _, text in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            sort_time, num, _ = rows[limit - 1]
            next_cursor = encode_cursor(sort_time, num)
        return RunPage(runs, next_cursor, seq)

    async def query_run_summaries(self, **filters: Any) -> SummaryPage:
        """As `query_runs`, each run as the JSON text of its summary (see `Store`)."""
        page = await self.query_runs(**filters)
        return SummaryPage([_dumps({k: v for k, v in run.items() if k not in SUMMARY_OMITS})
                            for run in page.runs], page.cursor, page.seq)

    # ------------------------------------------------------------------ events

    async def last_seq(self) -> int:
        """The seq of the last event ever written (0 if none), even if trimmed since."""
        async with self._pool.acquire() as conn:
            return await _last_seq(conn)

    async def first_retained_seq(self) -> int:
        """The oldest seq still stored; `last_seq() + 1` when none is."""
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
            where.append("type = ANY(?)")
            params.append(list(types))
        if run_id is not None:
            where.append("run_num = ?")
            params.append(_num(run_id))
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        params.append(limit)
        rows = await self._read(
            numbered(f"SELECT event FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"),
            *params)
        return [json.loads(text) for (text,) in rows]

    async def trim_events(
        self, keep_seconds: float | None = None, keep_count: int | None = None
    ) -> int:
        """Deletes events older than `keep_seconds` or beyond the newest `keep_count`,
        in short batches; seqs are never reused after. Returns how many were deleted."""
        last = await self.last_seq()
        bounds: list[int] = []
        if keep_count is not None:
            bounds.append(last - max(keep_count, 0) + 1)
        if keep_seconds is not None:
            cut = time_key(dt.datetime.now(dt.UTC) - dt.timedelta(seconds=keep_seconds))
            first = await self._pool.fetchval(
                "SELECT seq FROM events WHERE ts >= $1 ORDER BY seq LIMIT 1", cut)
            bounds.append(int(first) if first is not None else last + 1)
        if not bounds:
            return 0
        below = max(bounds)
        deleted = 0
        while True:

            async def body(conn: asyncpg.Connection) -> int:
                status = await conn.execute(
                    "DELETE FROM events WHERE seq IN "
                    "(SELECT seq FROM events WHERE seq < $1 ORDER BY seq LIMIT $2)",
                    below, _TRIM_BATCH)
                return int(status.split()[-1])

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
        """Writes a new version of an output beside the old one, a chunk per statement,
        then switches to it in one short transaction; readers see the old one until then."""
        num = _num(run_id)
        key = (num, output_id)
        if key in self._staging:
            raise StoreError(f"output {output_id!r} of {run_id} is already being stored")
        writer = self._need_writer()
        async with self._write_lock:
            row = await writer.fetchrow(
                "SELECT (SELECT 1 FROM runs WHERE run_num = $1), "
                "(SELECT gen FROM outputs WHERE run_num = $1 AND output_id = $2)", num, output_id)
        if row[0] is None:
            raise StoreError(f"no run {run_id}: write the run before its output")
        gen = (row[1] or 0) + 1
        self._staging[key] = gen

        def values(chunk: out.Chunk) -> tuple[Any, ...]:
            return (num, output_id, gen, chunk.chunk_no, chunk.start, chunk.length, chunk.data)

        try:
            async with self._write_lock:
                # Leftovers of a store of the same gen interrupted by a crash.
                await writer.execute(
                    "DELETE FROM output_chunks WHERE run_num = $1 AND output_id = $2 AND gen = $3",
                    num, output_id, gen)
            length = 0
            pending = await asyncio.to_thread(next, chunks, None)
            while pending is not None:
                following = await asyncio.to_thread(next, chunks, None)
                length = pending.start + pending.length
                if following is None:
                    break  # the last chunk goes in with the switch
                async with self._write_lock:
                    await writer.execute(_INSERT_CHUNK, *values(pending))
                pending = following
            last = pending

            async def switch(conn: asyncpg.Connection) -> None:
                if last is not None:
                    await conn.execute(_INSERT_CHUNK, *values(last))
                await conn.execute(_UPSERT_OUTPUT, num, output_id, gen, length,
                                   original_length, content_type)
                await conn.execute(
                    "DELETE FROM output_chunks WHERE run_num = $1 AND output_id = $2 AND gen <> $3",
                    num, output_id, gen)

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
                "DELETE FROM output_chunks WHERE run_num = $1 AND output_id = $2 AND gen = $3 "
                "AND gen IS DISTINCT FROM "
                "(SELECT gen FROM outputs WHERE run_num = $1 AND output_id = $2)",
                num, output_id, gen)

    async def list_outputs(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(
            "SELECT output_id, length, original_length, content_type FROM outputs "
            "WHERE run_num = $1 ORDER BY output_id COLLATE \"C\"", _num(run_id))
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
            row = await conn.fetchrow(
                "SELECT gen, length FROM outputs WHERE run_num = $1 AND output_id = $2",
                num, output_id)
            if row is None:
                return None
            gen, length = row
            stop = length if end is None else min(end, length)
            if start >= stop:
                return b""
            chunks = await conn.fetch(
                "SELECT start, data FROM output_chunks "
                "WHERE run_num = $1 AND output_id = $2 AND gen = $3 "
                "AND start < $4 AND start + length > $5 ORDER BY chunk_no",
                num, output_id, gen, stop, start)
        return await asyncio.to_thread(
            out.decompress_range, [(s, d) for s, d in chunks], start, stop)

    # ------------------------------------------------------------------ maintenance

    async def check(self) -> list[str]:
        """Problems found (empty if none): the run counters, the seq and run id counters,
        and output chunks left by an interrupted store. PostgreSQL checks its own pages
        and foreign keys; this reads every run once."""
        problems: list[str] = []
        async with self._snapshot() as conn:
            counted = {s: n for s, n in await conn.fetch(
                "SELECT state, count(*) FROM runs GROUP BY state")}
            kept = {s: n for s, n in await conn.fetch("SELECT state, n FROM run_counts") if n}
            max_seq = await conn.fetchval("SELECT max(seq) FROM events")
            last = await _last_seq(conn)
            max_num = await conn.fetchval("SELECT max(run_num) FROM runs")
            next_num = int(await conn.fetchval(
                "SELECT value FROM meta WHERE key = 'next_run_num'"))
        if counted != kept:
            problems.append(f"run counts: counters say {kept}, the runs table has {counted}")
        if max_seq is not None and max_seq > last:
            problems.append(f"events: seq {max_seq} is stored but last_seq says {last}; "
                            "new events would reuse seqs")
        if max_num is not None and max_num >= next_num:
            problems.append(f"runs: r{max_num} exists but the next run id is r{next_num}")
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
            "WHERE c.gen IS DISTINCT FROM (SELECT o.gen FROM outputs o "
            "WHERE o.run_num = c.run_num AND o.output_id = c.output_id)")
        return [(num, oid, gen) for num, oid, gen in rows if self._staging.get((num, oid)) != gen]

    async def vacuum(self) -> None:
        """Drops leftovers of interrupted output stores, then VACUUM (ANALYZE): space is
        reclaimed for reuse and the planner's statistics are fresh. Not VACUUM FULL,
        which would lock every table (and standbys read them) for the whole rewrite."""
        writer = self._need_writer()
        for num, oid, gen in await self._orphan_chunks():
            await self._drop_staged(num, oid, gen)
        async with self._write_lock:
            await writer.execute("VACUUM (ANALYZE)")

    async def stats(self) -> dict[str, Any]:
        """Sizes and counts for `/control/stats` and `apsisctl db check`."""
        by_state = {s.value: 0 for s in State}
        async with self._snapshot() as conn:
            for state, n in await conn.fetch("SELECT state, n FROM run_counts"):
                by_state[state] = n
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
            events = await conn.fetchval("SELECT count(*) FROM events")
            first_retained = await _first_retained_seq(conn)
            last = await _last_seq(conn)
        return {
            "path": self.path,
            "schema_version": pg_schema.SCHEMA_VERSION,
            "file_bytes": size,
            "wal_bytes": 0,  # the server's, shared by its databases: not this database's
            "free_bytes": 0,
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
        and job definitions) into the archive, a SQLite file; returns how many.

        Each chunk is copied and committed in the archive, then deleted here in one
        transaction: a crash between the two leaves a run in both, and the next archive
        copies it again from scratch.
        """
        writer = self._need_writer()
        cut = time_key(older_than)
        total = int(await self._pool.fetchval(
            "SELECT count(*) FROM runs WHERE sort_time < $1 AND state = ANY($2)", cut, _FINISHED))
        async with transfer.open_archive(os.fspath(archive_path)) as target:
            source = transfer.PgRows(writer)
            moved = 0
            if progress:
                progress(0, total)
            while True:
                async with self._write_lock:
                    nums = [num for (num,) in await writer.fetch(
                        "SELECT run_num FROM runs WHERE sort_time < $1 AND state = ANY($2) "
                        "ORDER BY sort_time LIMIT $3", cut, _FINISHED, chunk)]
                    if nums:
                        await transfer.copy_runs(source, target, await source.runs(nums))
                if not nums:
                    return moved
                await self._transaction(functools.partial(_delete_runs, nums=nums))
                moved += len(nums)
                if progress:
                    progress(moved, max(total, moved))
                await asyncio.sleep(0)


# ---------------------------------------------------------------------- helpers

_SET_META = (
    "INSERT INTO meta (key, value) VALUES ($1, $2) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)

_UPSERT_RUN = """
INSERT INTO runs (run_num, job_id, state, sort_time, jobdef_id, run)
VALUES ($1, $2, $3, $4, (SELECT jobdef_id FROM jobdefs WHERE hash = $5), $6)
ON CONFLICT (run_num) DO UPDATE SET
    job_id = excluded.job_id,
    state = excluded.state,
    sort_time = excluded.sort_time,
    jobdef_id = coalesce(excluded.jobdef_id, runs.jobdef_id),
    run = excluded.run
"""

_INSERT_CHUNK = (
    "INSERT INTO output_chunks (run_num, output_id, gen, chunk_no, start, length, data) "
    "VALUES ($1, $2, $3, $4, $5, $6, $7)"
)

_UPSERT_OUTPUT = (
    "INSERT INTO outputs (run_num, output_id, gen, length, original_length, content_type) "
    "VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (run_num, output_id) DO UPDATE SET "
    "gen = excluded.gen, length = excluded.length, original_length = excluded.original_length, "
    "content_type = excluded.content_type"
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


async def _write_small_output(conn: asyncpg.Connection, output: SmallOutput) -> None:
    num, output_id = output.num, output.output_id
    gen = (await conn.fetchval(
        "SELECT gen FROM outputs WHERE run_num = $1 AND output_id = $2", num, output_id) or 0) + 1
    await conn.execute("DELETE FROM output_chunks WHERE run_num = $1 AND output_id = $2",
                       num, output_id)
    await conn.executemany(
        _INSERT_CHUNK,
        [(num, output_id, gen, c.chunk_no, c.start, c.length, c.data) for c in output.chunks])
    await conn.execute(_UPSERT_OUTPUT, num, output_id, gen, output.length,
                       output.original_length, output.content_type)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset between two reads: none. asyncpg rolls back an unfinished
    transaction itself; a reader changes no session state (no settings, locks, LISTEN
    or cursors), so the default reset would only cost a round trip per read."""


async def _delete_runs(conn: asyncpg.Connection, nums: list[int]) -> None:
    await transfer.PgRows(conn).delete_runs(nums)


def _keepalives(takeover: float) -> dict[str, str]:
    """TCP keepalive settings that end a lost peer's session within about `takeover`
    (idle, then probes a second apart); ignored on a unix socket."""
    third = str(max(1, int(takeover / 3)))
    return {"tcp_keepalives_idle": third, "tcp_keepalives_interval": "1",
            "tcp_keepalives_count": third, "tcp_user_timeout": str(int(takeover * 1000))}


async def _check_epoch(conn: asyncpg.Connection, epoch: int, shown: str) -> None:
    """Fencing: the write goes on only if no other daemon took over since `epoch` (the
    row lock makes a takeover wait for this transaction, or this one for it)."""
    current = await conn.fetchval("SELECT epoch FROM cluster FOR SHARE")
    if current != epoch:
        raise FencedError(f"write refused: another daemon leads {shown} since epoch {current} "
                          f"(this one led epoch {epoch})")


async def _last_seq(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT value FROM meta WHERE key = 'last_seq'"))


async def _first_retained_seq(conn: asyncpg.Connection) -> int:
    first = await conn.fetchval("SELECT min(seq) FROM events")
    return int(first) if first is not None else await _last_seq(conn) + 1


async def _probe(conn: asyncpg.Connection, sql: str, params: Sequence[Any]) -> int:
    """How many runs a side filter matches, counting no further than needed."""
    return int(await conn.fetchval(
        numbered(f"SELECT count(*) FROM (SELECT 1 FROM ({sql}) s LIMIT {SELECTIVE + 1}) t"),
        *params))


def _close_quietly(chunks: Iterator[out.Chunk]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        with contextlib.suppress(ValueError):  # still running in a worker thread
            close()


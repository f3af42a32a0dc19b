"""The PostgreSQL store (asyncpg): the same methods and semantics as the SQLite `Store`.

The rows, the queries and the logic are the same as SQLite's (`StoreBase` in
apsis/store/common.py holds them; apsis/store/query.py builds the runs query for both).
What this module holds is PostgreSQL's statements and how the database is reached:
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
import logging
import os
import socket
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from types import ModuleType
from typing import Any, ClassVar

import asyncpg  # type: ignore[import-untyped]

from apsis.store import pg_schema, transfer
from apsis.store.common import FINISHED_STATES, ProgressCallback, Statements, StoreBase
from apsis.store.errors import StoreError, StoreLockedError
from apsis.store.keys import time_key
from apsis.store.query import numbered

log = logging.getLogger("apsis.store")

_READERS = 4
_CONNECT_TIMEOUT = 10.0

EVENTS_CHANNEL = "apsis_events"

# meta.value is TEXT: the counters are cast to count.
SQL = Statements(
    last_seq="SELECT value FROM meta WHERE key = 'last_seq'",
    allocate_run_ids=(
        "UPDATE meta SET value = (value::bigint + ?)::text "
        "WHERE key = 'next_run_num' RETURNING value"
    ),
    raise_next_run_num=(
        "UPDATE meta SET value = greatest(value::bigint, ?)::text WHERE key = 'next_run_num'"
    ),
    in_list="= ANY(?)",
    load_unfinished="SELECT run FROM runs WHERE state = ANY(?) ORDER BY sort_time, run_num",
    list_outputs=(
        "SELECT output_id, length, original_length, content_type FROM outputs "
        'WHERE run_num = ? ORDER BY output_id COLLATE "C"'
    ),
    # Cut in Python: jsonb would reorder the keys and respace the text.
    summary=None,
    is_distinct_from="IS DISTINCT FROM",
).placeheld(numbered)


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


class PgStore(StoreBase):
    """The database of one Apsis daemon in PostgreSQL. Open with `await PgStore.open(url)`."""

    sql = SQL
    schema: ClassVar[ModuleType] = pg_schema
    is_postgres = True
    read_errors = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)

    def __init__(self, url: str, pool: asyncpg.Pool, writer: asyncpg.Connection | None,
                 *, elect: bool = False) -> None:
        self.url = url
        self.path = display_url(url)
        self._pool = pool
        self._writer = writer
        self._write_lock = asyncio.Lock()
        self._staging = {}
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

    # ------------------------------------------------------------------ connections

    def _need_writer(self) -> asyncpg.Connection:
        writer = super()._need_writer()
        if self._elect and self.epoch is None:
            raise FencedError(f"this daemon is a standby on {self.path}: only the leader writes")
        return writer

    async def _read(self, sql: str, params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return await self._pool.fetch(sql, *params)

    @staticmethod
    async def _fetch(conn: asyncpg.Connection, sql: str,
                     params: Sequence[Any] = ()) -> list[asyncpg.Record]:
        return await conn.fetch(sql, *params)

    @staticmethod
    async def _execute(conn: asyncpg.Connection, sql: str, params: Sequence[Any] = ()) -> int:
        status = await conn.execute(sql, *params)
        count = status.rpartition(" ")[2]  # "DELETE 3", "INSERT 0 1"; "SELECT 1"...
        return int(count) if count.isdigit() else 0

    @staticmethod
    async def _executemany(conn: asyncpg.Connection, sql: str,
                           rows: Sequence[Sequence[Any]]) -> None:
        await conn.executemany(sql, rows)

    @staticmethod
    def _list_param(values: Iterable[Any]) -> list[Any]:
        return list(values)

    @staticmethod
    def _placeholders(sql: str) -> str:
        return numbered(sql)

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[asyncpg.Connection]:
        """One read transaction: the statements run inside it see the same snapshot."""
        async with self._pool.acquire() as conn, conn.transaction(
            isolation="repeatable_read", readonly=True
        ):
            yield conn

    async def _run_transaction(self, writer: asyncpg.Connection,
                               body: Callable[[asyncpg.Connection], Any]) -> Any:
        try:
            async with writer.transaction():
                if self.epoch is not None:
                    await _check_epoch(writer, self.epoch, self.path)
                return await body(writer)
        except asyncpg.IntegrityConstraintViolationError as exc:
            raise StoreError(f"write refused by the database: {exc}") from exc

    async def _claim_seqs(self, conn: asyncpg.Connection, n: int) -> list[int]:
        last = int(await conn.fetchval(
            "UPDATE meta SET value = (value::bigint + $1)::text "
            "WHERE key = 'last_seq' RETURNING value", n))
        return list(range(last - n + 1, last + 1))

    def _seqs_committed(self, seqs: list[int]) -> None:
        pass  # counted in the database, by `_claim_seqs`

    async def _after_write(self, conn: asyncpg.Connection, seqs: list[int]) -> None:
        if seqs:  # delivered at commit, to the standbys' LISTEN
            await conn.execute("SELECT pg_notify($1, $2)", EVENTS_CHANNEL, str(seqs[-1]))

    # ------------------------------------------------------------------ maintenance

    async def _own_problems(self) -> list[str]:
        """The seq and run id counters against the rows. PostgreSQL checks its own pages
        and foreign keys."""
        problems: list[str] = []
        async with self._snapshot() as conn:
            max_seq = await conn.fetchval("SELECT max(seq) FROM events")
            last = await self._last_seq(conn)
            max_num = await conn.fetchval("SELECT max(run_num) FROM runs")
            next_num = int(await conn.fetchval(
                "SELECT value FROM meta WHERE key = 'next_run_num'"))
        if max_seq is not None and max_seq > last:
            problems.append(f"events: seq {max_seq} is stored but last_seq says {last}; "
                            "new events would reuse seqs")
        if max_num is not None and max_num >= next_num:
            problems.append(f"runs: r{max_num} exists but the next run id is r{next_num}")
        return problems

    async def _compact(self) -> None:
        """VACUUM (ANALYZE): space is reclaimed for reuse and the planner's statistics
        are fresh. Not VACUUM FULL, which would lock every table (and standbys read
        them) for the whole rewrite."""
        writer = self._need_writer()
        async with self._write_lock:
            await writer.execute("VACUUM (ANALYZE)")

    async def _sizes(self, conn: asyncpg.Connection) -> dict[str, int]:
        return {
            "file_bytes": await conn.fetchval("SELECT pg_database_size(current_database())"),
            "wal_bytes": 0,  # the server's, shared by its databases: not this database's
            "free_bytes": 0,
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
            "SELECT count(*) FROM runs WHERE sort_time < $1 AND state = ANY($2)", cut, FINISHED_STATES))
        async with transfer.open_archive(os.fspath(archive_path)) as target:
            source = transfer.PgRows(writer)
            moved = 0
            if progress:
                progress(0, total)
            while True:
                async with self._write_lock:
                    nums = [num for (num,) in await writer.fetch(
                        "SELECT run_num FROM runs WHERE sort_time < $1 AND state = ANY($2) "
                        "ORDER BY sort_time LIMIT $3", cut, FINISHED_STATES, chunk)]
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

"""What both store backends do the same way: `StoreBase`, with the SQL of each backend
given as `Statements`.

SQLite (`Store`, store.py) and PostgreSQL (`PgStore`, postgres.py) keep the same rows,
the same queries and the same output chunks; they differ in how a database is reached
(connections, transactions, locks), in a few statements, and in maintenance. So the
logic lives here once: preparing rows, giving seqs, streaming outputs, paging runs,
trimming events. A backend subclasses `StoreBase`, supplies its `Statements` (written
with `?` placeholders; PostgreSQL numbers them once, at import) and the few hooks marked
abstract below, and keeps its own open/close, `archive` and maintenance details.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import dataclasses
import datetime as dt
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any, ClassVar, NamedTuple, Self

from apsis.model.states import FINISHED, UNFINISHED, State
from apsis.store import keys
from apsis.store import outputs as out
from apsis.store.errors import StoreError, UnknownRunError
from apsis.store.keys import encode_cursor, run_sort_time, time_key
from apsis.store.query import SELECTIVE, RunQuery

Run = dict[str, Any]
ProgressCallback = Callable[[int, int], None]
Rows = Sequence[Sequence[Any]]

DEFAULT_CONTENT_TYPE = "application/octet-stream"
_TRIM_BATCH = 10_000

FINISHED_STATES = sorted(s.value for s in FINISHED)
UNFINISHED_STATES = sorted(s.value for s in UNFINISHED)

# A run's summary is the run without these: what tables draw, without what only the Run
# screen shows (program, conditions, actions, outputs) or the engine's own.
SUMMARY_OMITS = ("program", "conditions", "actions", "outputs", "meta", "job")


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


@dataclass(frozen=True, slots=True)
class SmallOutput:
    """An output compressed in memory, written within a `write` transaction."""

    num: int
    output_id: str
    chunks: list[out.Chunk]
    length: int
    original_length: int
    content_type: str


@dataclass(frozen=True)
class Statements:
    """The SQL of one backend, with `?` placeholders. The defaults are standard SQL both
    backends run as written; the others differ (types, JSON, index hints)."""

    last_seq: str
    """One row (the seq of the last event ever written), or none before the first."""
    allocate_run_ids: str
    """Adds ? to the run number counter; returns its new value."""
    raise_next_run_num: str
    """Raises the run number counter to at least ?."""
    in_list: str
    """`column <in_list>`: the column is one of the values of one list parameter (a
    fragment of SQL built at the call, which `_placeholders` then converts)."""
    load_unfinished: str
    """The JSON of the runs whose state is in the list ?, oldest first."""
    list_outputs: str
    """A run's outputs, by output id in byte order."""
    summary: str | None
    """`{}` (a runs query) wrapped to cut each run down to its summary, or None to
    cut it here."""
    is_distinct_from: str
    """The null-safe `<>` (SQLite before 3.39 knows only `IS NOT`)."""

    set_meta: str = (
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value"
    )
    delete_meta: str = "DELETE FROM meta WHERE key = ?"
    get_clock: str = "SELECT value FROM meta WHERE key = 'clock'"
    get_schedule_clocks: str = "SELECT key, value FROM meta WHERE key LIKE 'clock:%'"
    insert_jobdefs: str = "INSERT INTO jobdefs (hash, job) VALUES (?, ?) ON CONFLICT (hash) DO NOTHING"
    upsert_run: str = """
INSERT INTO runs (run_num, job_id, state, sort_time, jobdef_id, run)
VALUES (?, ?, ?, ?, (SELECT jobdef_id FROM jobdefs WHERE hash = ?), ?)
ON CONFLICT (run_num) DO UPDATE SET
    job_id = excluded.job_id,
    state = excluded.state,
    sort_time = excluded.sort_time,
    jobdef_id = coalesce(excluded.jobdef_id, runs.jobdef_id),
    run = excluded.run
"""
    upsert_run_keeping_job: str = """
INSERT INTO runs (run_num, job_id, state, sort_time, run) VALUES (?, ?, ?, ?, ?)
ON CONFLICT (run_num) DO UPDATE SET
    job_id = excluded.job_id,
    state = excluded.state,
    sort_time = excluded.sort_time,
    run = excluded.run
"""
    """`upsert_run` for a run written without its job definition (every transition): it
    keeps its link, and the row is written without looking up a definition or touching
    `jobdef_id` and its index (~3 ms of every 1 000 transitions)."""
    insert_log: str = "INSERT INTO run_log (run_num, ts, state, message) VALUES (?, ?, ?, ?)"
    insert_events: str = (
        "INSERT INTO events (seq, ts, type, run_num, job_id, event) VALUES (?, ?, ?, ?, ?, ?)"
    )
    get_run: str = "SELECT run FROM runs WHERE run_num = ?"
    get_run_job: str = (
        "SELECT j.job FROM runs r JOIN jobdefs j ON j.jobdef_id = r.jobdef_id WHERE r.run_num = ?"
    )
    run_log: str = "SELECT ts, state, message FROM run_log WHERE run_num = ? ORDER BY entry_id"
    run_counts: str = "SELECT state, n FROM run_counts"
    counted_runs: str = "SELECT state, count(*) FROM runs GROUP BY state"
    event_count: str = "SELECT count(*) FROM events"
    first_seq: str = "SELECT min(seq) FROM events"
    first_seq_since: str = "SELECT seq FROM events WHERE ts >= ? ORDER BY seq LIMIT 1"
    trim_events: str = (
        "DELETE FROM events WHERE seq IN "
        "(SELECT seq FROM events WHERE seq < ? ORDER BY seq LIMIT ?)"
    )
    probe: str = "SELECT count(*) FROM (SELECT 1 FROM ({}) s LIMIT " + str(SELECTIVE + 1) + ") t"
    output_gen: str = "SELECT gen, length FROM outputs WHERE run_num = ? AND output_id = ?"
    run_and_output_gen: str = (
        "SELECT (SELECT 1 FROM runs WHERE run_num = ?), "
        "(SELECT gen FROM outputs WHERE run_num = ? AND output_id = ?)"
    )
    output_chunks: str = (
        "SELECT start, data FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen = ? "
        "AND start < ? AND start + length > ? ORDER BY chunk_no"
    )
    insert_chunk: str = (
        "INSERT INTO output_chunks (run_num, output_id, gen, chunk_no, start, length, data) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)"
    )
    upsert_output: str = (
        "INSERT INTO outputs (run_num, output_id, gen, length, original_length, content_type) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (run_num, output_id) DO UPDATE SET "
        "gen = excluded.gen, length = excluded.length, original_length = excluded.original_length, "
        "content_type = excluded.content_type"
    )
    delete_chunks: str = "DELETE FROM output_chunks WHERE run_num = ? AND output_id = ?"
    delete_gen_chunks: str = (
        "DELETE FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen = ?"
    )
    delete_other_gens: str = (
        "DELETE FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen <> ?"
    )

    @property
    def drop_staged(self) -> str:
        """Deletes the chunks of one gen of an output, unless it is the current one
        (`?` placeholders: built, not converted by `placeheld`)."""
        return (
            "DELETE FROM output_chunks WHERE run_num = ? AND output_id = ? AND gen = ? "
            f"AND gen {self.is_distinct_from} "
            "(SELECT gen FROM outputs WHERE run_num = ? AND output_id = ?)"
        )

    @property
    def orphan_chunks(self) -> str:
        """The chunks (run, output, gen) of no current output: left by interrupted stores."""
        return (
            "SELECT DISTINCT c.run_num, c.output_id, c.gen FROM output_chunks c "
            f"WHERE c.gen {self.is_distinct_from} (SELECT o.gen FROM outputs o "
            "WHERE o.run_num = c.run_num AND o.output_id = c.output_id)"
        )

    def placeheld(self, convert: Callable[[str], str]) -> Statements:
        """The same statements with `convert` applied to each (PostgreSQL's `$n`)."""
        return dataclasses.replace(self, **{
            field.name: convert(value)
            for field in dataclasses.fields(self)
            if isinstance(value := getattr(self, field.name), str)
            and field.name not in ("in_list", "summary", "is_distinct_from")  # fragments
        })


class StoreBase(abc.ABC):
    """The backend-independent half of a store (the `RunStore` contract, base.py).

    A subclass sets `sql` and `schema` (its migrations module), `path`, `_writer`,
    `_write_lock` and `_staging`, and implements the connection hooks.
    """

    sql: ClassVar[Statements]
    schema: ClassVar[ModuleType]
    is_postgres: ClassVar[bool] = False
    """How `RunQuery` writes the runs query (apsis/store/query.py)."""
    read_errors: ClassVar[tuple[type[BaseException], ...]]
    """What a failed read raises: `read_problem` reports these."""

    path: str
    _writer: Any
    _write_lock: asyncio.Lock
    # (run_num, output_id) -> gen of outputs being written right now.
    _staging: dict[tuple[int, str], int]

    # ------------------------------------------------------------------ backend hooks

    @abc.abstractmethod
    async def _read(self, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Rows of one statement, read outside any transaction."""

    @abc.abstractmethod
    def _snapshot(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """One read transaction: the statements run inside it see the same snapshot."""

    @staticmethod
    @abc.abstractmethod
    async def _fetch(conn: Any, sql: str, params: Sequence[Any] = ()) -> Rows:
        """Rows of one statement on `conn` (a snapshot's or a transaction's)."""

    @staticmethod
    @abc.abstractmethod
    async def _execute(conn: Any, sql: str, params: Sequence[Any] = ()) -> int:
        """Runs one statement on `conn`; returns how many rows it changed."""

    @staticmethod
    @abc.abstractmethod
    async def _executemany(conn: Any, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @staticmethod
    @abc.abstractmethod
    def _list_param(values: Iterable[Any]) -> Any:
        """A list as the one parameter of `sql.in_list`."""

    @abc.abstractmethod
    async def _run_transaction(self, writer: Any, body: Callable[[Any], Any]) -> Any:
        """Runs `body(writer)` between a begin and a commit (a rollback if it raises),
        under the write lock; a refused constraint raises `StoreError`."""

    @abc.abstractmethod
    async def _claim_seqs(self, conn: Any, n: int) -> list[int]:
        """The next `n` event seqs, within the write transaction on `conn`."""

    @abc.abstractmethod
    def _seqs_committed(self, seqs: list[int]) -> None:
        """After a commit that gave these seqs (SQLite counts them in memory)."""

    @abc.abstractmethod
    async def _after_write(self, conn: Any, seqs: list[int]) -> None:
        """The end of a `write` transaction that gave `seqs` (PostgreSQL notifies)."""

    @abc.abstractmethod
    async def _own_problems(self) -> list[str]:
        """What `check` finds that only this backend checks."""

    @abc.abstractmethod
    async def _compact(self) -> None:
        """The backend's own part of `vacuum`, after leftover chunks are dropped."""

    @abc.abstractmethod
    async def _sizes(self, conn: Any) -> dict[str, int]:
        """`file_bytes`, `wal_bytes` and `free_bytes` for `stats`, in its snapshot."""

    # ------------------------------------------------------------------ open/close

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()  # type: ignore[attr-defined]

    @property
    def readonly(self) -> bool:
        return self._writer is None

    async def migrate(self) -> list[int]:
        """Applies pending migrations (`open` already does); returns the versions applied."""
        writer = self._need_writer()
        async with self._write_lock:
            return await self.schema.apply_migrations(writer)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ plumbing

    def _need_writer(self) -> Any:
        if self._writer is None:
            raise StoreError(f"database {self.path} is open read-only")
        return self._writer

    async def _transaction(
        self,
        body: Callable[[Any], Any],
        *,
        committed: Callable[[Any], None] | None = None,
        failed: Callable[[], None] | None = None,
    ) -> Any:
        """Runs `body` in one write transaction; cancelling the caller does not cut it
        in half (it finishes, committed or rolled back, and the callbacks run)."""
        writer = self._need_writer()

        async def run() -> Any:
            async with self._write_lock:
                try:
                    result = await self._run_transaction(writer, body)
                except BaseException:
                    if failed is not None:
                        failed()
                    raise
                if committed is not None:
                    committed(result)
                return result

        return await asyncio.shield(asyncio.ensure_future(run()))

    async def read_problem(self, timeout: float = 5.0) -> str | None:
        """Why the database cannot be read right now, or None: what `/alive` reports.

        A read transaction like any other reader's, so a reader left unusable shows here.
        """

        async def probe() -> None:
            async with self._snapshot() as conn:
                await self._fetch(conn, self.sql.last_seq)

        try:
            await asyncio.wait_for(probe(), timeout)
        except TimeoutError:
            return f"reading the database {self.path} took over {timeout:g}s"
        except self.read_errors as exc:
            return f"cannot read the database {self.path}: {exc}"
        return None

    async def _last_seq(self, conn: Any) -> int:
        rows = await self._fetch(conn, self.sql.last_seq)
        return int(rows[0][0]) if rows else 0

    async def _first_retained_seq(self, conn: Any) -> int:
        rows = await self._fetch(conn, self.sql.first_seq)
        if rows and rows[0][0] is not None:
            return int(rows[0][0])
        return await self._last_seq(conn) + 1

    # ------------------------------------------------------------------ run ids, clock

    async def allocate_run_ids(self, n: int = 1) -> list[str]:
        """`n` new run ids, strictly increasing and never handed out again.

        The counter is committed before the ids are returned, so an id that appeared
        anywhere (a log line, a reply) is not reused after a crash.
        """
        if n < 1:
            return []

        async def body(conn: Any) -> int:
            rows = await self._fetch(conn, self.sql.allocate_run_ids, (n,))
            return int(rows[0][0])

        end = await self._transaction(body)
        return [keys.run_id(num) for num in range(end - n, end)]

    async def get_clock(self) -> str | None:
        """The time up to which schedules have been processed, as last set."""
        rows = await self._read(self.sql.get_clock)
        return rows[0][0] if rows else None

    async def get_schedule_clocks(self) -> dict[str, str]:
        """Schedules expanded only up to an earlier time than the clock (their count of
        runs ahead is bounded): schedule key → that time."""
        rows = await self._read(self.sql.get_schedule_clocks)
        return {key.removeprefix("clock:"): value for key, value in rows}

    async def set_clock(self, time: str | dt.datetime) -> None:
        value = time.isoformat() if isinstance(time, dt.datetime) else time

        async def body(conn: Any) -> None:
            await self._execute(conn, self.sql.set_meta, ("clock", value))

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
        encoded: list[str] | None = None,
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

        `encoded`, if given, gets each event's JSON text as stored, once committed: the
        event stream sends those, so an event is encoded once.
        """
        nums, times = Memo(keys.run_num), Memo(time_key)
        run_groups, jobdefs, max_num = prepare_runs(runs, nums)
        log_rows = [prepare_log_entry(entry, nums) for entry in log_entries]
        event_meta = [event_keys(event, nums, times) for event in events]
        # Encoded here, before the transaction, without the seq it gives: the seq goes
        # in front of each text (`with_seq`), so the transaction holds no encoding.
        texts = [dumps(event) for event in events]
        event_rows: list[tuple[Any, ...]] = []
        clock_value = clock.isoformat() if isinstance(clock, dt.datetime) else clock
        sql = self.sql

        async def body(conn: Any) -> list[int]:
            seqs = await self._claim_seqs(conn, len(events)) if events else []
            event_rows.clear()
            for seq, event, text, (ts, type_, num, job_id) in zip(seqs, events, texts, event_meta):
                event["seq"] = seq
                event_rows.append((seq, ts, type_, num, job_id, with_seq(seq, text)))
            if jobdefs:
                await self._executemany(conn, sql.insert_jobdefs, list(jobdefs.items()))
            for with_job, rows in run_groups:
                await self._executemany(
                    conn, sql.upsert_run if with_job else sql.upsert_run_keeping_job, rows)
            if run_groups:
                await self._execute(conn, sql.raise_next_run_num, (max_num + 1,))
            if log_rows:
                await self._executemany(conn, sql.insert_log, log_rows)
            if event_rows:
                await self._executemany(conn, sql.insert_events, event_rows)
            for output in outputs:
                await self._write_small_output(conn, output)
            if clock_value is not None:
                await self._execute(conn, sql.set_meta, ("clock", clock_value))
            for key, value in (schedule_clocks or {}).items():
                if value is None:
                    await self._execute(conn, sql.delete_meta, (f"clock:{key}",))
                else:
                    await self._execute(conn, sql.set_meta, (f"clock:{key}", value))
            await self._after_write(conn, seqs)
            return seqs

        def failed() -> None:
            for event in events:
                event.pop("seq", None)

        seqs: list[int] = await self._transaction(body, committed=self._seqs_committed,
                                                  failed=failed)
        if encoded is not None:
            encoded.extend(row[5] for row in event_rows)
        return seqs

    async def _write_small_output(self, conn: Any, output: SmallOutput) -> None:
        num, output_id = output.num, output.output_id
        rows = await self._fetch(conn, self.sql.output_gen, (num, output_id))
        gen = (rows[0][0] if rows else 0) + 1
        await self._execute(conn, self.sql.delete_chunks, (num, output_id))
        await self._executemany(
            conn, self.sql.insert_chunk,
            [(num, output_id, gen, c.chunk_no, c.start, c.length, c.data) for c in output.chunks])
        await self._execute(conn, self.sql.upsert_output, (
            num, output_id, gen, output.length, output.original_length, output.content_type))

    # ------------------------------------------------------------------ run reads

    async def get_run(self, run_id: str) -> Run | None:
        rows = await self._read(self.sql.get_run, (run_num(run_id),))
        return json.loads(rows[0][0]) if rows else None

    async def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs that exist among `run_ids`, in the order asked."""
        nums = [run_num(r) for r in run_ids]
        rows = await self._read(
            self._placeholders(f"SELECT run_num, run FROM runs WHERE run_num {self.sql.in_list}"),
            (self._list_param(nums),))
        by_num = {num: text for num, text in rows}
        return [json.loads(by_num[n]) for n in nums if n in by_num]

    async def get_run_job(self, run_id: str) -> dict[str, Any] | None:
        """The job definition the run was bound with, if one was written with it."""
        rows = await self._read(self.sql.get_run_job, (run_num(run_id),))
        return json.loads(rows[0][0]) if rows else None

    async def load_unfinished_runs(self) -> Sequence[Run]:
        """Every run not yet finished, oldest first: what the engine restores at start.
        Each is decoded as it is read (`JsonRows`)."""
        rows = await self._read(self.sql.load_unfinished,
                                (self._list_param(UNFINISHED_STATES),))
        return JsonRows([text for (text,) in rows])

    async def run_log(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(self.sql.run_log, (run_num(run_id),))
        return [{"run_id": run_id, "ts": ts, "state": st, "message": msg} for ts, st, msg in rows]

    async def count_runs_by_state(self) -> dict[str, int]:
        """Runs per state (every state, zeros included), from counters the triggers keep."""
        counts = {s.value: 0 for s in State}
        for state, n in await self._read(self.sql.run_counts):
            counts[state] = n
        return counts

    async def query_runs(
        self,
        *,
        job_id: str | Sequence[str] | None = None,
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
        """As `query_runs` (the same filters), each run as the JSON text of its summary.

        Where the database cuts the summaries (SQLite) they are never parsed here: a
        table of 100 000 runs costs the daemon an index scan, not 100 000 parses."""
        if self.sql.summary is not None:
            return SummaryPage(*await self._query_run_texts(**filters, summaries=True))
        page = await self.query_runs(**filters)
        return SummaryPage([dumps({k: v for k, v in run.items() if k not in SUMMARY_OMITS})
                            for run in page.runs], page.cursor, page.seq)

    async def _query_run_texts(
        self,
        *,
        job_id: str | Sequence[str] | None = None,
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
        query = RunQuery(limit, postgres=self.is_postgres)
        query.add_filters(
            job_id=job_id,
            states=None if states is None else [str(s) for s in states],
            since=since,
            until=until,
            cursor=cursor,
        )
        side = query.side_filters(labels, args)
        nums = None if run_ids is None else [run_num(r) for r in run_ids]
        async with self._snapshot() as conn:
            if nums is None and side:
                counts = [await self._probe(conn, sql, params) for sql, params in side]
                query.choose_driver(side, counts)
            query.finish(nums, side)
            sql = query.sql()
            if summaries:  # the same rows, cut down
                sql = self.sql.summary.format(sql)  # type: ignore[union-attr]
            rows = list(await self._fetch(conn, sql, query.params))
            seq = await self._last_seq(conn)
        if summaries:  # in their order again (linear when SQLite kept it): not a temp B-tree
            rows.sort(key=lambda row: (row[0], row[1]), reverse=True)
        next_cursor = None
        if len(rows) > limit:
            sort_time, num, _ = rows[limit - 1]
            next_cursor = encode_cursor(sort_time, num)
        return [text for _, _, text in rows[:limit]], next_cursor, seq

    async def _probe(self, conn: Any, sql: str, params: Sequence[Any]) -> int:
        """How many runs a side filter matches, counting no further than needed."""
        rows = await self._fetch(conn, self._placeholders(self.sql.probe.format(sql)), params)
        return int(rows[0][0])

    # ------------------------------------------------------------------ events

    async def last_seq(self) -> int:
        """The seq of the last event ever written (0 if none), even if trimmed since."""
        rows = await self._read(self.sql.last_seq)
        return int(rows[0][0]) if rows else 0

    async def first_retained_seq(self) -> int:
        """The oldest seq still stored; `last_seq() + 1` when none is.

        A client that saw up to seq S can resume losslessly iff S + 1 >= this.
        """
        async with self._snapshot() as conn:
            return await self._first_retained_seq(conn)

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
            where.append(f"type {self.sql.in_list}")
            params.append(self._list_param(types))
        if run_id is not None:
            where.append("run_num = ?")
            params.append(run_num(run_id))
        if job_id is not None:
            where.append("job_id = ?")
            params.append(job_id)
        params.append(limit)
        rows = await self._read(self._placeholders(
            f"SELECT event FROM events WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"), params)
        return [json.loads(text) for (text,) in rows]

    @staticmethod
    def _placeholders(sql: str) -> str:
        """SQL built here with `?` placeholders, as this backend takes it."""
        return sql

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
            rows = await self._read(self.sql.first_seq_since, (cut,))
            bounds.append(int(rows[0][0]) if rows else last + 1)
        if not bounds:
            return 0
        below = max(bounds)  # delete seq < below
        deleted = 0
        while True:

            async def body(conn: Any) -> int:
                return await self._execute(conn, self.sql.trim_events, (below, _TRIM_BATCH))

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
        num = run_num(run_id)
        key = (num, output_id)
        if key in self._staging:
            raise StoreError(f"output {output_id!r} of {run_id} is already being stored")
        writer = self._need_writer()
        sql = self.sql
        async with self._write_lock:
            rows = await self._fetch(writer, sql.run_and_output_gen, (num, num, output_id))
        if rows[0][0] is None:
            raise StoreError(f"no run {run_id}: write the run before its output")
        gen = (rows[0][1] or 0) + 1
        self._staging[key] = gen

        def row(chunk: out.Chunk) -> tuple[Any, ...]:
            return (num, output_id, gen, chunk.chunk_no, chunk.start, chunk.length, chunk.data)

        try:
            async with self._write_lock:
                # Leftovers of a store of the same gen interrupted by a crash.
                await self._execute(writer, sql.delete_gen_chunks, (num, output_id, gen))
            length = 0
            pending = await asyncio.to_thread(next, chunks, None)
            while pending is not None:
                following = await asyncio.to_thread(next, chunks, None)
                length = pending.start + pending.length
                if following is None:
                    break  # the last chunk goes in with the switch
                async with self._write_lock:
                    await self._execute(writer, sql.insert_chunk, row(pending))
                pending = following
            last = pending

            async def switch(conn: Any) -> None:
                if last is not None:
                    await self._execute(conn, sql.insert_chunk, row(last))
                await self._execute(conn, sql.upsert_output, (
                    num, output_id, gen, length, original_length, content_type))
                await self._execute(conn, sql.delete_other_gens, (num, output_id, gen))

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
        return SmallOutput(run_num(run_id), output_id, chunks, length, len(data), content_type)

    async def _drop_staged(self, num: int, output_id: str, gen: int) -> None:
        writer = self._need_writer()
        async with self._write_lock:
            await self._execute(writer, self._placeholders(self.sql.drop_staged),
                                (num, output_id, gen, num, output_id))

    async def list_outputs(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._read(self.sql.list_outputs, (run_num(run_id),))
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
        num = run_num(run_id)
        async with self._snapshot() as conn:
            rows = await self._fetch(conn, self.sql.output_gen, (num, output_id))
            if not rows:
                return None
            gen, length = rows[0]
            stop = length if end is None else min(end, length)
            if start >= stop:
                return b""
            chunks = await self._fetch(
                conn, self.sql.output_chunks, (num, output_id, gen, stop, start))
        return await asyncio.to_thread(
            out.decompress_range, [(s, d) for s, d in chunks], start, stop
        )

    # ------------------------------------------------------------------ maintenance

    async def check(self) -> list[str]:
        """Problems found (empty if none), each saying what to do: the backend's own
        checks, the run counters against the runs, and output chunks left by an
        interrupted store."""
        problems = await self._own_problems()
        counted = {state: n for state, n in await self._read(self.sql.counted_runs)}
        kept = {s: n for s, n in await self._read(self.sql.run_counts) if n}
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
        rows = await self._read(self.sql.orphan_chunks)
        return [(num, oid, gen) for num, oid, gen in rows if self._staging.get((num, oid)) != gen]

    async def vacuum(self) -> None:
        """Drops leftovers of interrupted output stores, then reclaims space as the
        backend does (`_compact`)."""
        self._need_writer()
        for num, oid, gen in await self._orphan_chunks():
            await self._drop_staged(num, oid, gen)
        await self._compact()

    async def stats(self) -> dict[str, Any]:
        """Sizes and counts for `/control/stats` and `apsisctl db check`; no full scans."""
        by_state = {s.value: 0 for s in State}
        async with self._snapshot() as conn:
            for state, n in await self._fetch(conn, self.sql.run_counts):
                by_state[state] = n
            sizes = await self._sizes(conn)
            ((events,),) = await self._fetch(conn, self.sql.event_count)
            first_retained = await self._first_retained_seq(conn)
            last = await self._last_seq(conn)
        return {
            "path": self.path,
            "schema_version": self.schema.SCHEMA_VERSION,
            **sizes,
            "runs": sum(by_state.values()),
            "runs_by_state": by_state,
            "events": events,
            "first_retained_seq": first_retained,
            "last_seq": last,
        }


# ---------------------------------------------------------------------- row helpers


def _compact_encoder() -> Callable[[Any], str]:
    """`json.dumps(value, separators=(",", ":"), ensure_ascii=False)`, made once.

    Each `json.dumps` with options builds an encoder and checks for cycles (rows and
    events never have any): ~20 µs of a 500-byte event's ~4, and a burst of 1 000
    runs encodes 3 000 runs and events a stage."""
    make = getattr(json.encoder, "c_make_encoder", None)  # CPython's, not a public API
    base = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, check_circular=False)
    try:
        encode = make(None, base.default, json.encoder.encode_basestring, None, ":", ",",
                      False, False, True)  # type: ignore[misc]
        fast: Callable[[Any], str] = lambda value: "".join(encode(value, 0))  # noqa: E731
        sample = {"a": [1, 2.5, None, True, "é\n\"x\""], "b": {"c": -0.0}}
        if fast(sample) == base.encode(sample):
            return fast
    except Exception:  # no C accelerator, or its signature changed
        pass
    return base.encode  # the same output, slower


dumps: Callable[[Any], str] = _compact_encoder()
"""JSON as the store writes it: compact, unescaped."""


def with_seq(seq: int, text: str) -> str:
    """An event's JSON text (an object, encoded without its seq) with `"seq": seq` first."""
    return f'{{"seq":{seq},{text[1:]}'


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


class JsonRows(Sequence[dict[str, Any]]):
    """JSON texts decoded one at a time, when read: a restart that decoded a day of
    100 000 unfinished runs at once held ~800 MB at its peak, which the process kept."""

    __slots__ = ("_texts",)

    def __init__(self, texts: list[str]) -> None:
        self._texts = texts

    def __len__(self) -> int:
        return len(self._texts)

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [json.loads(text) for text in self._texts[index]]
        return json.loads(self._texts[index])


def run_num(run_id: str) -> int:
    """The number of a run id; an id that cannot be one is an `UnknownRunError`."""
    try:
        return keys.run_num(run_id)
    except ValueError as exc:
        raise UnknownRunError(str(exc)) from None


class Memo(dict[Any, Any]):
    """`make(key)` for each key, made once: what one write prepares names the same runs
    and times many times over (a transition's row, its log entry and its two events),
    and each is a regex match (~1 µs)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[Any], Any]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> Any:
        value = self[key] = self._make(key)
        return value


def prepare_runs(runs: Sequence[Run], nums: Mapping[str, int]
                 ) -> tuple[list[tuple[bool, list[tuple[Any, ...]]]], dict[str, str], int]:
    """Rows for the runs upserts, the job definitions by hash, and the largest run number
    (`nums`: run numbers by run id, a `Memo`).

    The rows come in order, in groups of runs next to each other that carry a job
    definition (True: rows for `upsert_run`) or do not (False: `upsert_run_keeping_job`),
    so that a run written twice in one call ends as its last row says."""
    groups: list[tuple[bool, list[tuple[Any, ...]]]] = []
    rows: list[tuple[Any, ...]] = []  # the last group's
    jobdefs: dict[str, str] = {}
    # Runs bound from one job share its definition's dict (Job.jso): a burst of 1 000
    # runs encodes and hashes it once, not 1 000 times (~20 ms a batch).  Keyed by id:
    # every dict stays alive, held by `runs`, for the whole call.
    hashes: dict[int, str] = {}
    max_num = 0
    for run in runs:
        run_id = run.get("run_id")
        try:
            num = nums[run_id]  # type: ignore[index]
            job = run.get("job")
            job_hash = None
            if job is not None:
                job_hash = hashes.get(id(job))
                if job_hash is None:
                    text = json.dumps(job, sort_keys=True, separators=(",", ":"),
                                      ensure_ascii=False)
                    job_hash = hashes[id(job)] = hashlib.sha256(text.encode()).hexdigest()
                    jobdefs[job_hash] = text
                run = {k: v for k, v in run.items() if k != "job"}
                row: tuple[Any, ...] = (num, run["job_id"], str(run["state"]),
                                        run_sort_time(run), job_hash, dumps(run))
            else:
                row = (num, run["job_id"], str(run["state"]), run_sort_time(run), dumps(run))
        except (KeyError, ValueError, TypeError) as exc:
            raise StoreError(f"run {run_id!r} cannot be stored: {exc!r}") from None
        with_job = job_hash is not None
        if not groups or groups[-1][0] != with_job:
            rows = []
            groups.append((with_job, rows))
        rows.append(row)
        max_num = max(max_num, num)
    return groups, jobdefs, max_num


def prepare_log_entry(entry: Mapping[str, Any], nums: Mapping[str, int]) -> tuple[Any, ...]:
    try:
        return (
            nums[entry["run_id"]],
            entry.get("ts") or now_iso(),
            entry.get("state"),
            entry["message"],
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise StoreError(f"run log entry {entry!r} cannot be stored: {exc!r}") from None


def event_keys(event: dict[str, Any], nums: Mapping[str, int], times: Mapping[str, str]
               ) -> tuple[str, str, int | None, str | None]:
    """(ts key, type, run number, job id): the columns events are filtered on (`nums`
    and `times`: run numbers and time keys, `Memo`s)."""
    if "type" not in event:
        raise StoreError(f"event without a type: {event!r}")
    ts = event.get("ts")
    if ts is None:  # not setdefault: its default would be made for every event
        ts = event["ts"] = now_iso()
    run = event.get("run")
    run = run if isinstance(run, dict) else {}
    job = event.get("job")
    job = job if isinstance(job, dict) else {}
    run_id = event.get("run_id") or run.get("run_id")
    job_id = event.get("job_id") or run.get("job_id") or job.get("job_id")
    try:
        return (
            times[ts],
            event["type"],
            None if run_id is None else nums[run_id],
            job_id,
        )
    except (ValueError, TypeError) as exc:
        raise StoreError(f"event {event!r} cannot be stored: {exc}") from None


def _close_quietly(chunks: Iterator[out.Chunk]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        with contextlib.suppress(ValueError):  # still running in a worker thread: it ends on its own
            close()


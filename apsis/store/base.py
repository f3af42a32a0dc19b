"""What a store is, whichever database holds it: the contract of both backends.

`Store` (SQLite, apsis/store/store.py) and `PgStore` (PostgreSQL, apsis/store/postgres.py)
implement it, most of it once in their shared base (`StoreBase`, apsis/store/common.py);
the engine, the service, `apsisctl db` and the tests see only this. Open one with
`apsis.store.open_store(path_or_url)`.

The guarantees every backend keeps:
- `write` is one transaction: runs, run log entries, events, the clocks and small
  outputs are all kept or none is. Each event gets the next `seq`, set into its dict:
  seqs are strictly increasing in commit order and never reused, even after a trim or a
  reopen, so a reader that saw seq S and reads `events_since(S)` misses nothing.
- Run ids from `allocate_run_ids` are committed before they are returned: never reused.
- Reads see committed data only; `query_runs` returns a page and the seq it is
  consistent with from one snapshot.
- Outputs are capped (head and tail kept), split into chunks of `CHUNK_SIZE` stored
  bytes and zlib-compressed the same way (apsis/store/outputs.py), so a range read
  decompresses only what it touches.
- Errors are `StoreError`s saying what to do; an unknown run id is `UnknownRunError`,
  a bad cursor `InvalidCursorError`; a database held by another daemon is
  `StoreLockedError`, raised by opening.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol, Self, runtime_checkable

from apsis.store.common import RunPage, SmallOutput, SummaryPage

Run = dict[str, Any]
ProgressCallback = Callable[[int, int], None]


@runtime_checkable
class RunStore(Protocol):
    """A daemon's database: runs, their logs and outputs, job definitions, events."""

    path: str
    """The file, or the URL without its password: what messages and stats name."""

    @property
    def readonly(self) -> bool: ...

    async def close(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc: object) -> None: ...

    async def migrate(self) -> list[int]:
        """Applies pending migrations (opening already does); returns the versions applied."""
        ...

    async def read_problem(self, timeout: float = 5.0) -> str | None:
        """Why the database cannot be read right now, or None: what `/alive` reports."""
        ...

    # -- run ids and clocks

    async def allocate_run_ids(self, n: int = 1) -> list[str]:
        """`n` new run ids, strictly increasing, committed before they are returned."""
        ...

    async def get_clock(self) -> str | None:
        """The time up to which schedules have been processed, as last set."""
        ...

    async def get_schedule_clocks(self) -> dict[str, str]:
        """Schedules expanded only up to an earlier time than the clock: key → time."""
        ...

    async def set_clock(self, time: str | dt.datetime) -> None: ...

    # -- writes

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
        """Records all of it in one transaction; returns the events' new seqs (and
        appends their JSON texts as stored to `encoded`)."""
        ...

    # -- run reads

    async def get_run(self, run_id: str) -> Run | None: ...

    async def get_runs(self, run_ids: Sequence[str]) -> list[Run]:
        """The runs that exist among `run_ids`, in the order asked."""
        ...

    async def get_run_job(self, run_id: str) -> dict[str, Any] | None:
        """The job definition the run was bound with, if one was written with it."""
        ...

    async def load_unfinished_runs(self) -> Sequence[Run]:
        """Every run not yet finished, oldest first: what the engine restores at start
        (decoded one by one as they are read: a day of them is a lot of memory)."""
        ...

    async def run_log(self, run_id: str) -> list[dict[str, Any]]: ...

    async def count_runs_by_state(self) -> dict[str, int]:
        """Runs per state, every state included, without counting rows."""
        ...

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
        """Runs matching every filter, newest first, a page at a time (see `Store`)."""
        ...

    async def query_run_summaries(self, **filters: Any) -> SummaryPage:
        """As `query_runs`, each run as the JSON text of its summary (GET /runs?summary)."""
        ...

    # -- events

    async def last_seq(self) -> int:
        """The seq of the last event ever written (0 if none), even if trimmed since."""
        ...

    async def first_retained_seq(self) -> int:
        """The oldest seq still stored; `last_seq() + 1` when none is."""
        ...

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
        ...

    async def trim_events(
        self, keep_seconds: float | None = None, keep_count: int | None = None
    ) -> int:
        """Deletes old events in short batches; returns how many."""
        ...

    # -- outputs

    async def store_output_from_file(
        self,
        run_id: str,
        output_id: str,
        path: str | os.PathLike[str],
        *,
        max_bytes: int | None,
        content_type: str = ...,
    ) -> dict[str, Any]:
        """Stores a file as the run's output, streaming, in bounded memory."""
        ...

    async def store_output_bytes(
        self,
        run_id: str,
        output_id: str,
        data: bytes,
        max_bytes: int | None = None,
        *,
        content_type: str = ...,
    ) -> dict[str, Any]: ...

    @staticmethod
    def prepare_small_output(
        run_id: str, output_id: str, data: bytes, max_bytes: int | None = None,
        *, content_type: str = ...,
    ) -> SmallOutput:
        """Compresses an output held in memory, for `write(outputs=...)`."""
        ...

    async def list_outputs(self, run_id: str) -> list[dict[str, Any]]: ...

    async def get_output(
        self, run_id: str, output_id: str, start: int = 0, end: int | None = None
    ) -> bytes | None:
        """Bytes [start, end) of the stored output; None if the run has no such output."""
        ...

    # -- maintenance

    async def cluster(self) -> dict[str, Any]:
        """Who leads: epoch, leader, advertise, heartbeat and the connected `nodes`
        (`apsisctl status`)."""
        ...

    async def check(self) -> list[str]:
        """Problems found (empty if none), each saying what to do."""
        ...

    async def vacuum(self) -> None:
        """Drops leftovers of interrupted output stores and reclaims space."""
        ...

    async def stats(self) -> dict[str, Any]:
        """Sizes and counts for `/control/stats` and `apsisctl db check`."""
        ...

    async def archive(
        self,
        older_than: dt.datetime | str,
        archive_path: str | os.PathLike[str],
        *,
        chunk: int = 1000,
        progress: ProgressCallback | None = None,
    ) -> int:
        """Moves old finished runs into the archive (a SQLite file); returns how many."""
        ...

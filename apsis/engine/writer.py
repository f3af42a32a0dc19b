"""Group commit: changes that happen together share one transaction.

Each call still returns only once its own change is durable (SPEC §1.10: a 2xx
means it is in the database), but a burst of 2 000 transitions costs a handful
of commits, not 2 000.

A batch that the database refuses is written again one change at a time, so a
bad change fails alone, with its own caller; everybody else's goes in.  After a
commit, each change's `apply` callback runs (in commit order: this is where the
engine changes its memory), then the batch's events are published, then callers
resume.  Nothing is observable that the database does not hold.

A store that can queue a write on its own thread (`submit_write`: SQLite) gets the
changes as they come, not when this task next runs: a stage of a burst (1 000 runs
becoming `running`) is made in one turn of the event loop, ~20 ms, and this task only
runs after it.  The first change goes to the store's thread at once, and those made
while it is written go as the next transaction, and so on: the database writes while
the loop makes the rest, and what is left at the end of the turn is a smaller last
transaction, not the whole stage: the first change of a stage waited for the turn,
the stage's encoding (~15 ms) and its transaction (~30 ms) before anything was
published.  Batches are still committed, applied and published in order; one the
database refuses holds those queued behind it (`WritesHeld`) until its changes are
written again, one at a time, then they are written again too.  `commit_seconds`
counts from the hand-over, waiting behind earlier batches included.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ..store.errors import DiskFullError
from .errors import DiskFull, NotRecorded, Unavailable
from .events import EventBus

log = logging.getLogger(__name__)


@dataclass
class _Change:
    runs: Sequence[dict[str, Any]]
    log_entries: Sequence[dict[str, Any]]
    events: Sequence[dict[str, Any]]
    clock: str | None
    schedule_clocks: Mapping[str, str | None]
    outputs: Sequence[Any]
    apply: Callable[[], None] | None
    done: asyncio.Future = field(repr=False)


class Writer:
    def __init__(self, store: Any, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self._pending: list[_Change] = []
        # Batches handed to the store's thread (`submit_write`), oldest first, each with
        # its job (None: to be written from here) and when it was handed over.
        self._queued: deque[tuple[list[_Change], Future[list[str]] | None, float]] = deque()
        self._submit: Callable[..., Future[list[str]]] | None = getattr(store, "submit_write", None)
        self._recovering = False  # a queued batch failed: nothing is handed over meanwhile
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.commit_seconds: list[float] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="apsis-writer")

    @property
    def closing(self) -> bool:
        return self._closing

    async def write(self, runs: Sequence[dict[str, Any]] = (),
                    log_entries: Sequence[dict[str, Any]] = (),
                    events: Sequence[dict[str, Any]] = (), clock: str | None = None,
                    outputs: Sequence[Any] = (), apply: Callable[[], None] | None = None,
                    schedule_clocks: Mapping[str, str | None] | None = None) -> None:
        """Queues one change and waits until it is committed (events get their `seq`).

        Raises `NotRecorded` if the database refuses this change; then nothing of it
        happened and `apply` is not called.
        """
        if self._closing:
            raise Unavailable("the daemon is shutting down")
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Change(runs, log_entries, events, clock, schedule_clocks or {},
                                     outputs, apply, future))
        if self._queued:
            job = self._queued[-1][1]
            if job is not None and job.done():
                self._hand_over()
        elif self._submit is not None:
            self._hand_over()
        self._wake.set()
        await future

    def _hand_over(self) -> None:
        """What is pending, queued on the store's thread now (see the module's docstring);
        not while a batch is to be written from here first (it commits in its turn)."""
        if (self._recovering or self._submit is None or not self._pending
                or any(job is None for _, job, _ in self._queued)):
            return
        batch, self._pending = self._pending, []
        job: Future[list[str]] | None
        try:
            job = self._submit(**_merged(batch))
        except Exception:  # cannot be prepared (a bad change): written from `_loop`
            job = None
        self._queued.append((batch, job, time.monotonic()))

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            if self._submit is None:
                batch, self._pending = self._pending, []
                if batch:
                    await self._commit(batch)
            else:
                while True:
                    self._hand_over()
                    if not self._queued:
                        break
                    await self._finish(*self._queued.popleft())
            if self._closing and not self._pending:
                return

    async def _finish(self, batch: list[_Change], job: Future[list[str]] | None,
                      started: float) -> None:
        """Waits for a batch handed to the store's thread, then applies and publishes it;
        a batch that failed (or was not handed over) is written again from here."""
        if job is None:
            await self._commit(batch)
            return
        try:
            texts = await asyncio.wrap_future(job)
        except Exception:
            # The batches queued behind it are held (they fail, nothing done): written
            # again after its changes, in their order, from here.
            self._recovering = True
            try:
                held = list(self._queued)
                self._queued.clear()
                await asyncio.gather(*(asyncio.wrap_future(j) for _, j, _ in held if j),
                                     return_exceptions=True)
                self.store.release_writes()
                await self._commit(batch)
                for later, _, _ in held:
                    await self._commit(later)
            finally:
                self._recovering = False
            return
        self._timed(time.monotonic() - started)
        self._committed(batch, texts)

    async def _commit(self, batch: list[_Change]) -> None:
        try:
            texts = await self._store(batch)
        except Exception as exc:
            if len(batch) == 1:
                log.error("database write failed: %s", exc, exc_info=exc)
                _fail(batch[0], exc)
                return
            log.warning("a batch of %d changes failed (%s); writing them one by one", len(batch), exc)
            for change in batch:
                try:
                    texts = await self._store([change])
                except Exception as one:
                    log.error("database write failed: %s", one, exc_info=one)
                    _fail(change, one)
                    continue
                self._committed([change], texts)
            return
        self._committed(batch, texts)

    async def _store(self, batch: list[_Change]) -> list[str]:
        """Writes the batch in one transaction; the events' JSON texts as stored."""
        start = time.monotonic()
        texts: list[str] = []
        await self.store.write(**_merged(batch), encoded=texts)
        self._timed(time.monotonic() - start)
        return texts

    def _timed(self, seconds: float) -> None:
        self.commit_seconds.append(seconds)
        del self.commit_seconds[:-1000]

    def _committed(self, batch: list[_Change], texts: list[str]) -> None:
        for change in batch:
            if change.apply is not None:
                try:
                    change.apply()
                except Exception:  # a bug in memory bookkeeping must not stop the writer
                    log.exception("applying a committed change failed")
        self.bus.publish([e for c in batch for e in c.events], texts)
        for change in batch:
            if not change.done.done():
                change.done.set_result(None)

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task


def _merged(batch: list[_Change]) -> dict[str, Any]:
    """The store's `write` arguments for a batch of changes."""
    # A later write of the same run replaces the earlier row in this batch.
    clocks = [c.clock for c in batch if c.clock is not None]
    return {"runs": list({r["run_id"]: r for c in batch for r in c.runs}.values()),
            "log_entries": [e for c in batch for e in c.log_entries],
            "events": [e for c in batch for e in c.events],
            "clock": clocks[-1] if clocks else None,
            "schedule_clocks": {k: v for c in batch for k, v in c.schedule_clocks.items()},
            "outputs": [o for c in batch for o in c.outputs]}


def _fail(change: _Change, exc: Exception) -> None:
    if not change.done.done():
        change.done.set_exception(
            DiskFull(str(exc)) if isinstance(exc, DiskFullError) else
            NotRecorded(f"the database refused the change: {type(exc).__name__}: {exc}"))

"""Group commit: changes that happen together share one transaction.

Each call still returns only once its own change is durable (SPEC §1.10: a 2xx
means it is in the database), but a burst of 2 000 transitions costs a handful
of commits, not 2 000.

A batch that the database refuses is written again one change at a time, so a
bad change fails alone, with its own caller; everybody else's goes in.  After a
commit, each change's `apply` callback runs (in commit order: this is where the
engine changes its memory), then the batch's events are published, then callers
resume.  Nothing is observable that the database does not hold.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
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
        self._wake.set()
        await future

    async def _loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, []
            if batch:
                await self._commit(batch)
            if self._closing and not self._pending:
                return

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
        # A later write of the same run replaces the earlier row in this batch.
        runs = list({r["run_id"]: r for c in batch for r in c.runs}.values())
        clocks = [c.clock for c in batch if c.clock is not None]
        schedule_clocks = {k: v for c in batch for k, v in c.schedule_clocks.items()}
        loop = asyncio.get_running_loop()
        start = loop.time()
        texts: list[str] = []
        await self.store.write(runs, [e for c in batch for e in c.log_entries],
                               [e for c in batch for e in c.events],
                               clock=clocks[-1] if clocks else None,
                               schedule_clocks=schedule_clocks,
                               outputs=[o for c in batch for o in c.outputs], encoded=texts)
        self.commit_seconds.append(loop.time() - start)
        del self.commit_seconds[:-1000]
        return texts

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


def _fail(change: _Change, exc: Exception) -> None:
    if not change.done.done():
        change.done.set_exception(
            DiskFull(str(exc)) if isinstance(exc, DiskFullError) else
            NotRecorded(f"the database refused the change: {type(exc).__name__}: {exc}"))

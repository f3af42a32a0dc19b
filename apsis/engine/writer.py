"""Group commit: transitions that happen together share one transaction.

Each call still returns only once its own change is durable (SPEC §1.10: a 2xx
means it is in the database), but a burst of 2 000 transitions costs a handful
of commits, not 2 000.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Any

from .events import EventBus

log = logging.getLogger(__name__)


@dataclass
class _Batch:
    runs: list[dict[str, Any]] = field(default_factory=list)
    log_entries: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    clock: str | None = None
    outputs: list[Any] = field(default_factory=list)
    waiters: list[asyncio.Future] = field(default_factory=list)


class Writer:
    def __init__(self, store: Any, bus: EventBus) -> None:
        self.store = store
        self.bus = bus
        self._pending = _Batch()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._closing = False
        self.commit_seconds: list[float] = []

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="apsis-writer")

    async def write(self, runs: Sequence[dict[str, Any]] = (),
                    log_entries: Sequence[dict[str, Any]] = (),
                    events: Sequence[dict[str, Any]] = (), clock: str | None = None,
                    outputs: Sequence[Any] = ()) -> None:
        """Queues the change and waits until it is committed (events get their `seq`)."""
        if self._closing:
            raise RuntimeError("the daemon is shutting down")
        batch = self._pending
        # A later write of the same run replaces the earlier row in this batch.
        batch.runs.extend(runs)
        batch.log_entries.extend(log_entries)
        batch.events.extend(events)
        batch.outputs.extend(outputs)
        if clock is not None:
            batch.clock = clock
        future = asyncio.get_running_loop().create_future()
        batch.waiters.append(future)
        self._wake.set()
        await future

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            batch, self._pending = self._pending, _Batch()
            if not batch.waiters:
                if self._closing:
                    return
                continue
            runs = list({r["run_id"]: r for r in batch.runs}.values())
            start = loop.time()
            try:
                await self.store.write(runs, batch.log_entries, batch.events, clock=batch.clock,
                                       outputs=batch.outputs)
            except Exception as exc:
                log.exception("database write failed")
                for fut in batch.waiters:
                    if not fut.done():
                        fut.set_exception(exc)
                continue
            self.commit_seconds.append(loop.time() - start)
            del self.commit_seconds[:-1000]
            self.bus.publish(batch.events)
            for fut in batch.waiters:
                if not fut.done():
                    fut.set_result(None)
            if self._closing and not self._pending.waiters:
                return

    async def close(self) -> None:
        self._closing = True
        self._wake.set()
        if self._task:
            await self._task

"""Wall-clock timers on the event loop.

The loop's clock is monotonic; schedule times are wall-clock.  A timer far in the
future is re-armed in steps, so a clock adjustment delays a run by at most one
step instead of a day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import heapq
from collections.abc import Callable

from ..lib.timefmt import UTC

MAX_STEP = 60.0


class WallTimer:
    """Calls `callback` once at (or just after) wall time `when`, unless cancelled."""

    def __init__(self, when: dt.datetime, callback: Callable[[], object]) -> None:
        self.when = when
        self.callback = callback
        self._handle: asyncio.TimerHandle | None = None
        self.cancelled = False
        self._arm()

    def _arm(self) -> None:
        delay = (self.when - dt.datetime.now(UTC)).total_seconds()
        loop = asyncio.get_running_loop()
        if delay <= 0:
            self._handle = None
            loop.call_soon(self._fire)
        else:
            self._handle = loop.call_later(min(delay, MAX_STEP), self._check)

    def _check(self) -> None:
        if not self.cancelled:
            self._arm()

    def _fire(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.callback()

    def cancel(self) -> None:
        self.cancelled = True
        if self._handle:
            self._handle.cancel()


class DueQueue:
    """Runs due at wall-clock times: one sleeping task for all of them.

    A day of scheduled runs can be tens of thousands; a timer each, re-armed every
    step, would keep the loop busy.  They fall due at a few distinct times (10 000
    jobs firing on the hour or minute), so the heap holds each time once, with the
    list of what is due then, and a key costs a list slot and its entry in `_due`,
    not a tuple and a datetime of its own.  Cancelling is lazy: a stale entry is
    dropped when its time comes up.
    """

    def __init__(self, on_due: Callable[[str], None]) -> None:
        self._on_due = on_due
        self._heap: list[dt.datetime] = []  # the distinct times, each once
        self._at: dict[dt.datetime, list[str]] = {}  # what is due at each of them
        self._due: dict[str, list[str]] = {}  # a key → the list it is due in (its time's)
        self._wake = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def add(self, key: str, when: dt.datetime) -> None:
        keys = self._at.get(when)
        if keys is None:
            self._at[when] = keys = []
            heapq.heappush(self._heap, when)
            if self._heap[0] == when:
                self._wake.set()
        elif self._due.get(key) is keys:
            return
        keys.append(key)
        self._due[key] = keys

    def cancel(self, key: str) -> None:
        self._due.pop(key, None)

    async def run(self) -> None:
        while True:
            now = dt.datetime.now(UTC)
            while self._heap and self._heap[0] <= now:
                keys = self._at.pop(heapq.heappop(self._heap))
                for key in keys:
                    if self._due.get(key) is keys:
                        del self._due[key]
                        self._on_due(key)
            delay = MAX_STEP if not self._heap else min(MAX_STEP, (self._heap[0] - now).total_seconds())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), max(delay, 0.0))
            except TimeoutError:
                pass

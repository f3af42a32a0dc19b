"""Wall-clock timers on the event loop.

The loop's clock is monotonic; schedule times are wall-clock.  A timer far in the
future is re-armed in steps, so a clock adjustment delays a run by at most one
step instead of a day.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Callable

from ..lib.timefmt import UTC

MAX_STEP = 60.0


class WallTimer:
    """Calls `callback` once at (or just after) wall time `when`, unless cancelled."""

    def __init__(self, when: dt.datetime, callback: Callable[[], None]) -> None:
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

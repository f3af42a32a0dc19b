"""Live fan-out of stored events to subscribers (the API's websockets, the waiter).

Events are stored first (by the writer) and published after, so a subscriber
that falls behind can always resume from the store by `seq`.  A subscriber's
queue is bounded: one that does not keep up is cut off, never slowing the
daemon or the other subscribers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from collections.abc import Callable

log = logging.getLogger(__name__)

Event = dict[str, Any]


class Subscription:
    """A bounded queue of events for one client."""

    def __init__(self, bus: EventBus, maxsize: int, predicate: Callable[[Event], bool] | None) -> None:
        self._bus = bus
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(maxsize)
        self.predicate = predicate
        self.overflowed = False
        self.closed = False

    def offer(self, event: Event) -> None:
        if self.closed or (self.predicate and not self.predicate(event)):
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True
            self.close()

    async def get(self) -> Event | None:
        """The next event, or None once the subscription is closed (overflow or shutdown)."""
        if self.closed and self.queue.empty():
            return None
        return await self.queue.get()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._bus._subs.discard(self)
        # Wake a reader blocked on get() (its queue is empty then, so the sentinel fits).
        # A full queue keeps every event: the reader gets them all, in order, then None
        # from get(); dropping one to make room would leave a gap that a reader resuming
        # from its last seq could not see.
        try:
            self.queue.put_nowait(None)
        except asyncio.QueueFull:
            pass

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []
        self.last_seq = 0

    def subscribe(self, maxsize: int = 10_000, predicate: Callable[[Event], bool] | None = None) -> Subscription:
        sub = Subscription(self, maxsize, predicate)
        self._subs.add(sub)
        return sub

    def listen(self, callback: Callable[[Event], None]) -> None:
        """In-process listeners, called synchronously for every event (keep them quick)."""
        self._listeners.append(callback)

    def publish(self, events: list[Event]) -> None:
        for event in events:
            self.last_seq = max(self.last_seq, event.get("seq", 0))
            for callback in self._listeners:
                try:
                    callback(event)
                except Exception:  # a listener bug must not stop the stream
                    log.exception("event listener failed")
            for sub in list(self._subs):
                sub.offer(event)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)

    def close_all(self) -> None:
        for sub in list(self._subs):
            sub.close()

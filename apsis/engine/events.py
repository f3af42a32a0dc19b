"""Live fan-out of stored events to subscribers (the API's websockets, the waiter).

Events are stored first (by the writer) and published after, so a subscriber
that falls behind can always resume from the store by `seq`.  Two kinds of reader:

- a `Subscription` has a bounded queue of the events it wants (a live output
  socket waits on a few); one that does not keep up is cut off, never slowing the
  daemon or the other subscribers;
- a `Follower` has no queue: it keeps its own place (a seq), is woken when events
  are published, and reads them from wherever they are (the event stream's log of
  recent events, else the store).  A burst of any size costs it no memory, so a
  reader that keeps reading is never cut off.
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


class Follower:
    """A reader that keeps its own place in the stream; see the module's docstring."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self.closed = False

    async def wait(self, after: int) -> bool:
        """Until an event after seq `after` has been published (True), or the bus is
        closed or this follower is (False: the daemon is stopping)."""
        bus = self._bus
        while not self.closed and bus.last_seq <= after:
            await bus._published.wait()
        return not self.closed

    def close(self) -> None:
        self.closed = True
        self._bus._followers.discard(self)

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._followers: set[Follower] = set()
        # Set (and replaced) at each publish: one wake-up for every follower at once.
        self._published = asyncio.Event()
        self._listeners: list[Callable[[Event], None]] = []
        self._text_listeners: list[Callable[[Event, str | None], None]] = []
        self.last_seq = 0

    def subscribe(self, maxsize: int = 10_000, predicate: Callable[[Event], bool] | None = None) -> Subscription:
        sub = Subscription(self, maxsize, predicate)
        self._subs.add(sub)
        return sub

    def follow(self) -> Follower:
        """A reader woken at each publish, that reads the events itself by seq."""
        follower = Follower(self)
        self._followers.add(follower)
        return follower

    def listen(self, callback: Callable[[Event], None]) -> None:
        """In-process listeners, called synchronously for every event (keep them quick)."""
        self._listeners.append(callback)

    def listen_encoded(self, callback: Callable[[Event, str | None], None]) -> None:
        """As `listen`, and the callback also gets the event's JSON text as stored, when
        the publisher has it (None: encode it yourself)."""
        self._text_listeners.append(callback)

    def publish(self, events: list[Event], texts: list[str] | None = None) -> None:
        """Events just committed, in seq order; `texts`, if given, are their JSON as stored."""
        subs = list(self._subs)  # one closed while offered leaves the set: not iterated
        for i, event in enumerate(events):
            self.last_seq = max(self.last_seq, event.get("seq", 0))
            for callback in self._listeners:
                try:
                    callback(event)
                except Exception:  # a listener bug must not stop the stream
                    log.exception("event listener failed")
            for text_callback in self._text_listeners:
                try:
                    text_callback(event, texts[i] if texts else None)
                except Exception:
                    log.exception("event listener failed")
            for sub in subs:
                sub.offer(event)
        if events:
            self._wake()

    def _wake(self) -> None:
        self._published.set()
        self._published = asyncio.Event()

    @property
    def subscriber_count(self) -> int:
        return len(self._subs) + len(self._followers)

    def close_all(self) -> None:
        for sub in list(self._subs):
            sub.close()
        for follower in list(self._followers):
            follower.close()
        self._wake()

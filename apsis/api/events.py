"""WS /events: the durable event stream (SPEC §1.7).

Each client is a reader with its own place in the stream (the seq of the last event
it was sent), not a queue.  The bus wakes every reader when events are published;
a reader then takes what follows its place from the log of recent events (each
event encoded once, for every client), or from the store when it is further behind
than the log reaches (a replay with `since`, a client that was slow in a burst).
So a burst of any size costs no memory per client and never cuts off a client that
keeps reading.  Only a client that stops reading (a send to it blocks) while the
stream runs more than `APSIS_EVENT_QUEUE` events ahead of it is closed with 4008,
told to resume from its last seq, so it never slows the daemon.

`since=SEQ` has no special path: the reader starts at SEQ, reads the store until it
reaches the log, and goes on live, with no gap and no duplicate.

With `batch=1` a frame is a JSON array of every event ready for the client, up to
~1 MiB.  What a reader takes at one place with one filter is built once and shared
by the readers at the same place with the same filter: when 50 clients keep up, a
burst costs one frame each per commit of the burst, encoded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from bisect import bisect_right
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from ..lib.timefmt import format_time, now
from ..model.event_types import EVENT_TYPES
from ..store.common import dumps
from .errors import ApiError, bad_request
from .params import Query
from .wsutil import close_quietly, deny, send_frame, shares_frames, text_frame, until_disconnect

if TYPE_CHECKING:
    from ..engine.events import Follower
    from .app import Api

CLOSE_BEHIND = 4008  # the client fell behind; reconnect with since=<last seq>
CLOSE_GOING_AWAY = 1001  # the daemon is stopping
REPLAY_BATCH = 1000  # events per read of the store
FRAME_BYTES = 1 << 20  # a batched frame holds events up to about this size
LOG_BYTES = 16 << 20  # encoded events the log keeps for readers (a burst of ~30 000)
CACHE_BYTES = 8 << 20  # shared pages kept for readers that come to the same place
SEND_TIMEOUT = 60.0  # one message that cannot be written for this long: the client is gone
STUCK_SECONDS = 5.0  # a send blocked this long, with the stream far ahead: cut off
WATCH_SECONDS = 0.5
DEFAULT_QUEUE = 10_000


def queue_size() -> int:
    """How many events a client that stopped reading may fall behind before it is cut
    off (env APSIS_EVENT_QUEUE)."""
    try:
        return max(16, int(os.environ.get("APSIS_EVENT_QUEUE", DEFAULT_QUEUE)))
    except ValueError:
        return DEFAULT_QUEUE


def event_keys(event: dict[str, Any]) -> tuple[str | None, str | None, str | None]:
    """(type, run id, job id): what a filter looks at, the same keys the store files
    events under, so replay and live agree."""
    run = event.get("run")
    run = run if isinstance(run, dict) else {}
    job = event.get("job")
    job = job if isinstance(job, dict) else {}
    return (event.get("type"), event.get("run_id") or run.get("run_id"),
            event.get("job_id") or run.get("job_id") or job.get("job_id"))


@dataclass(frozen=True, slots=True)
class EventFilter:
    """`type`, `run_id` and `job_id` of a subscription (None: any); hashable, so
    readers with the same filter share pages."""

    types: frozenset[str] | None = None
    run_id: str | None = None
    job_id: str | None = None

    def matches(self, type_: str | None, run_id: str | None, job_id: str | None) -> bool:
        return ((self.types is None or type_ in self.types)
                and (self.run_id is None or run_id == self.run_id)
                and (self.job_id is None or job_id == self.job_id))


NO_FILTER = EventFilter()


class Page:
    """Events for one reader at one place: (seq, JSON text) pairs, and `upto`, the seq
    the reader is at once they are sent (past events the filter skipped)."""

    __slots__ = ("items", "upto", "_frame", "_wire")

    def __init__(self, items: list[tuple[int, str]], upto: int) -> None:
        self.items = items
        self.upto = upto
        self._frame: str | None = None
        self._wire: bytes | None = None

    @property
    def frame(self) -> str:
        """The events as one batched frame (a JSON array), built once."""
        if self._frame is None:
            self._frame = self._join()
        return self._frame

    @property
    def wire(self) -> bytes:
        """The batched frame as a whole websocket frame (`text_frame`), built once: what
        readers on a server that `shares_frames` send (they never need `frame`)."""
        if self._wire is None:
            self._wire = text_frame(self._frame if self._frame is not None else self._join())
        return self._wire

    def _join(self) -> str:
        return "[" + ",".join(text for _, text in self.items) + "]"

    @property
    def size(self) -> int:
        return sum(len(text) + 1 for _, text in self.items) + 2


class EventLog:
    """The recent events, each encoded once when published, for every reader.

    It holds every event after `covers_after`, up to LOG_BYTES of them; older ones
    are read from the store.  With no reader nothing is kept (or encoded)."""

    def __init__(self, covers_after: int, max_bytes: int = LOG_BYTES) -> None:
        self.covers_after = covers_after
        self.max_bytes = max_bytes
        self.readers = 0
        self._seqs: list[int] = []
        self._entries: list[tuple[str | None, str | None, str | None, str]] = []
        self._first = 0  # index of the oldest entry kept (the lists are trimmed lazily)
        self._bytes = 0
        self._pages: OrderedDict[tuple[EventFilter, int], Page] = OrderedDict()
        self._page_bytes = 0

    def append(self, event: dict[str, Any], text: str | None = None) -> None:
        """The bus's listener: called for every event published, in seq order, with its
        JSON text as stored when the publisher has it."""
        seq = event.get("seq")
        if not isinstance(seq, int):
            return
        if not self.readers:
            self._clear()
            self.covers_after = seq
            return
        if text is None:
            text = dumps(event)
        self._seqs.append(seq)
        self._entries.append((*event_keys(event), text))
        self._bytes += len(text)
        while self._bytes > self.max_bytes and len(self._seqs) - self._first > 1:
            self._bytes -= len(self._entries[self._first][3])
            self.covers_after = self._seqs[self._first]
            self._first += 1
        if self._first > 4096 and self._first * 2 > len(self._seqs):
            del self._seqs[:self._first], self._entries[:self._first]
            self._first = 0

    def _clear(self) -> None:
        if self._seqs or self._pages:
            self._seqs, self._entries, self._first, self._bytes = [], [], 0, 0
            self._pages.clear()
            self._page_bytes = 0

    def leave(self) -> None:
        """A reader has gone; the last one frees the log."""
        self.readers -= 1
        if not self.readers:
            # What it held is gone: a reader that comes next, before any new event, reads
            # those from the store (an empty page short of the bus's last seq would spin).
            if len(self._seqs) > self._first:
                self.covers_after = self._seqs[-1]
            self._clear()

    def read(self, after: int, flt: EventFilter) -> Page | None:
        """The events after seq `after` that `flt` lets through, up to FRAME_BYTES;
        None if the log no longer reaches back to `after` (read the store)."""
        if after < self.covers_after:
            return None
        key = (flt, after)
        page = self._pages.get(key)
        if page is not None:
            self._pages.move_to_end(key)
            return page
        seqs, entries = self._seqs, self._entries
        items: list[tuple[int, str]] = []
        size, upto = 2, after
        for i in range(bisect_right(seqs, after, lo=self._first), len(seqs)):
            type_, run_id, job_id, text = entries[i]
            if flt is NO_FILTER or flt.matches(type_, run_id, job_id):
                if items and size + len(text) > FRAME_BYTES:
                    break
                items.append((seqs[i], text))
                size += len(text) + 1
            upto = seqs[i]
        page = Page(items, upto)
        if upto > after:  # an empty answer is not kept: the next read may find more
            self._pages[key] = page
            self._page_bytes += size
            while self._page_bytes > CACHE_BYTES and len(self._pages) > 1:
                _, old = self._pages.popitem(last=False)
                self._page_bytes -= old.size
        return page


def _batch_param(q: Query) -> bool:
    text = q.one("batch")
    if text is None or text in ("0", "false"):
        return False
    if text in ("1", "true"):
        return True
    raise bad_request(f"batch must be 1 or 0, not {text!r}", "bad_param")


async def events_ws(websocket: WebSocket) -> None:
    api: Api = websocket.app.state.api
    try:
        api.auth.check(websocket, "read", allow_query=True)
        q = Query(websocket, ("since", "run_id", "job_id", "type", "batch", "token"))
        since = q.int("since", None, 0)
        batch = _batch_param(q)
        run_id, job_id, types = q.one("run_id"), q.one("job_id"), q.many("type") or None
        unknown = sorted(set(types or ()) - set(EVENT_TYPES))
        if unknown:  # else the stream would wait in silence for a type that never comes
            raise bad_request(f"unknown event type {unknown[0]!r}; types are: "
                              + ", ".join(EVENT_TYPES), "bad_param")
        if run_id is not None:
            from ..store.keys import run_num

            try:
                run_num(run_id)
            except ValueError as exc:
                raise bad_request(f"run_id: {exc}", "bad_param") from None
    except ApiError as err:
        await deny(websocket, err)
        return
    flt = EventFilter(frozenset(types) if types else None, run_id, job_id)
    follower = api.service.follow()
    api.event_log.readers += 1
    try:
        live_point = api.service.last_seq
        await websocket.accept()
        # The shared no-filter instance: the log checks it by identity, per event.
        stream = _Stream(api, websocket, follower, NO_FILTER if flt == NO_FILTER else flt, batch)
        await until_disconnect(websocket, stream.guarded(since, live_point))
    finally:
        follower.close()
        api.event_log.leave()


class _Stream:
    def __init__(self, api: Api, websocket: WebSocket, follower: Follower, flt: EventFilter,
                 batch: bool) -> None:
        self.api = api
        self.websocket = websocket
        self.follower = follower
        self.flt = flt
        self.batch = batch
        self.shared_frames = batch and shares_frames(websocket)
        self.last = 0  # the seq of the last event sent (or skipped by the filter)
        self.sending_since: float | None = None  # set while a send is in progress

    async def guarded(self, since: int | None, live_point: int) -> None:
        """Runs the stream with a watchdog that cuts it off if a send stays blocked while
        the stream runs far ahead: the cost is one timer per client, not one per message."""
        main = asyncio.ensure_future(self.run(since, live_point))
        try:
            while not main.done():
                await asyncio.wait({main}, timeout=WATCH_SECONDS)
                started = self.sending_since
                if main.done() or started is None:
                    continue
                blocked = time.monotonic() - started
                behind = self.api.service.last_seq - self.last
                if blocked > SEND_TIMEOUT or (blocked > STUCK_SECONDS
                                              and behind > self.api.queue_size):
                    main.cancel()
                    await asyncio.gather(main, return_exceptions=True)
                    await self.cut_off()
                    return
            main.result()
        finally:
            main.cancel()

    async def cut_off(self) -> None:
        self.api.events_cut_off += 1
        # The close frame waits behind what the client has not read: not forever.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(close_quietly(self.websocket, CLOSE_BEHIND,
                                                 f"fell behind: reconnect with since={self.last}"),
                                   SEND_TIMEOUT)

    async def run(self, since: int | None, live_point: int) -> None:
        service = self.api.service
        if since is None:
            self.last = live_point
        elif since + 1 < await service.first_retained_seq() or since > await service.last_stored_seq():
            # Too old (trimmed) or from another database: the client must reload.
            self.last = live_point
            reset = dumps({"seq": live_point, "ts": format_time(now()), "type": "reset",
                           "since": since})
            await self.send(reset if not self.batch else f"[{reset}]")
        else:
            self.last = since
        log = self.api.event_log
        while True:
            page = log.read(self.last, self.flt)
            if page is None or (page.upto <= self.last < service.last_seq):
                # The log no longer reaches back, or it cannot move this reader on
                # while events it has not seen exist: the store can (never spin here).
                page = await self._from_store(self.last)
            if page.items:
                if self.shared_frames:
                    await self.send_wire(page.wire)
                elif self.batch:
                    await self.send(page.frame)
                else:
                    for seq, text in page.items:
                        await self.send(text)
                        self.last = seq
            self.last = page.upto
            if not await self.follower.wait(self.last):
                await close_quietly(self.websocket, CLOSE_GOING_AWAY, "daemon stopping")
                return

    async def _from_store(self, after: int) -> Page:
        """The next events from the store (a replay, or a reader the log no longer reaches)."""
        flt = self.flt
        published = self.api.service.last_seq  # every event up to here is stored
        events = await self.api.service.events_since(
            after, limit=REPLAY_BATCH, types=sorted(flt.types) if flt.types else None,
            run_id=flt.run_id, job_id=flt.job_id)
        items: list[tuple[int, str]] = []
        size = 2
        for event in events:
            text = dumps(event)
            if items and size + len(text) > FRAME_BYTES:
                return Page(items, items[-1][0])
            items.append((event["seq"], text))
            size += len(text) + 1
        upto = items[-1][0] if items else after
        if len(events) < REPLAY_BATCH:
            upto = max(upto, published)  # nothing else matched up to there
        return Page(items, upto)

    async def send(self, text: str) -> None:
        self.sending_since = time.monotonic()
        await self.websocket.send_text(text)
        self.sending_since = None

    async def send_wire(self, frame: bytes) -> None:
        """As `send`, a frame from `Page.wire`."""
        self.sending_since = time.monotonic()
        await send_frame(self.websocket, frame)
        self.sending_since = None

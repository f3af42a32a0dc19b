"""WS /events: the durable event stream (SPEC §1.7).

`since=SEQ` replays from the store and then goes live without a gap or a duplicate:
the subscription to the bus is made first, so every event after that moment is
queued; the replay reads the store up to its end; live events the replay already
sent are dropped by seq.  Each client has a bounded queue: one that falls behind is
closed with 4008 and told to resume from its last seq, and never slows the daemon.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from ..lib.timefmt import format_time, now
from .errors import ApiError, bad_request
from .params import Query
from .wsutil import close_quietly, deny, until_disconnect

if TYPE_CHECKING:
    from .app import Api

CLOSE_BEHIND = 4008  # the client fell behind; reconnect with since=<last seq>
CLOSE_GOING_AWAY = 1001  # the daemon is stopping
REPLAY_BATCH = 1000
SEND_TIMEOUT = 60.0  # one message that cannot be written for this long: the client is gone
WATCH_SECONDS = 0.5
DEFAULT_QUEUE = 10_000


def queue_size() -> int:
    """Events buffered per client before it counts as fallen behind (env APSIS_EVENT_QUEUE)."""
    try:
        return max(16, int(os.environ.get("APSIS_EVENT_QUEUE", DEFAULT_QUEUE)))
    except ValueError:
        return DEFAULT_QUEUE


def event_filter(types: list[str] | None, run_id: str | None,
                 job_id: str | None) -> Callable[[dict[str, Any]], bool] | None:
    """The live twin of the store's event filter: the same keys, so replay and live agree."""
    if not types and run_id is None and job_id is None:
        return None
    wanted = set(types) if types else None

    def match(event: dict[str, Any]) -> bool:
        if wanted is not None and event.get("type") not in wanted:
            return False
        run: dict[str, Any] = event["run"] if isinstance(event.get("run"), dict) else {}
        if run_id is not None and (event.get("run_id") or run.get("run_id")) != run_id:
            return False
        if job_id is not None:
            job: dict[str, Any] = event["job"] if isinstance(event.get("job"), dict) else {}
            if (event.get("job_id") or run.get("job_id") or job.get("job_id")) != job_id:
                return False
        return True

    return match


class EncodedEvents:
    """Live events are encoded once, not once per subscriber (a burst to 50 clients)."""

    def __init__(self, size: int = 8192) -> None:
        self._size = size
        self._texts: OrderedDict[int, str] = OrderedDict()

    def text(self, event: dict[str, Any]) -> str:
        seq = event.get("seq")
        if seq is None:
            return dumps(event)
        text = self._texts.get(seq)
        if text is None:
            text = self._texts[seq] = dumps(event)
            if len(self._texts) > self._size:
                self._texts.popitem(last=False)
        return text


def dumps(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


class FellBehind(Exception):
    pass


async def events_ws(websocket: WebSocket) -> None:
    api: Api = websocket.app.state.api
    try:
        api.auth.check(websocket, "read", allow_query=True)
        q = Query(websocket, ("since", "run_id", "job_id", "type", "token"))
        since = q.int("since", None, 0)
        run_id, job_id, types = q.one("run_id"), q.one("job_id"), q.many("type") or None
        if run_id is not None:
            from ..store.keys import run_num

            try:
                run_num(run_id)
            except ValueError as exc:
                raise bad_request(f"run_id: {exc}", "bad_param") from None
    except ApiError as err:
        await deny(websocket, err)
        return
    sub = api.service.subscribe(api.queue_size, event_filter(types, run_id, job_id))
    try:
        live_point = api.service.last_seq
        await websocket.accept()
        stream = _Stream(api, websocket, sub)
        await until_disconnect(websocket, stream.guarded(since, live_point, types, run_id, job_id))
    finally:
        sub.close()


class _Stream:
    def __init__(self, api: Api, websocket: WebSocket, sub: Any) -> None:
        self.api = api
        self.websocket = websocket
        self.sub = sub
        self.last = 0
        self.sending_since: float | None = None  # set while a send is in progress

    async def guarded(self, *args: Any) -> None:
        """Runs the stream with a watchdog that cuts it off if a send blocks while the
        client's queue overflows: the cost is one timer per client, not one per message."""
        main = asyncio.ensure_future(self.run(*args))
        try:
            while not main.done():
                await asyncio.wait({main}, timeout=WATCH_SECONDS)
                started = self.sending_since
                if main.done() or started is None:
                    continue
                if self.sub.overflowed or time.monotonic() - started > SEND_TIMEOUT:
                    main.cancel()
                    await asyncio.gather(main, return_exceptions=True)
                    await self.cut_off()
                    return
            main.result()
        finally:
            main.cancel()

    async def cut_off(self) -> None:
        self.api.events_cut_off += 1
        await close_quietly(self.websocket, CLOSE_BEHIND,
                            f"fell behind: reconnect with since={self.last}")

    async def run(self, since: int | None, live_point: int, types: list[str] | None,
                  run_id: str | None, job_id: str | None) -> None:
        store = self.api.service
        try:
            if since is None:
                self.last = live_point
            elif since + 1 < await store.first_retained_seq() or since > await store.last_stored_seq():
                # Too old (trimmed) or from another database: the client must reload.
                self.last = live_point
                await self.send(dumps({"seq": live_point, "ts": format_time(now()), "type": "reset",
                                       "since": since}))
            else:
                self.last = since
                while True:
                    batch = await store.events_since(self.last, limit=REPLAY_BATCH, types=types,
                                                     run_id=run_id, job_id=job_id)
                    for event in batch:
                        await self.send(dumps(event))
                        self.last = event["seq"]
                    if len(batch) < REPLAY_BATCH:
                        break
                    if self.sub.overflowed:
                        raise FellBehind
            encoded = self.api.encoded_events
            while True:
                event = await self.sub.get()
                if event is None:
                    if self.sub.overflowed:
                        raise FellBehind
                    await close_quietly(self.websocket, CLOSE_GOING_AWAY, "daemon stopping")
                    return
                if event["seq"] <= self.last:
                    continue
                await self.send(encoded.text(event))
                self.last = event["seq"]
        except FellBehind:
            await self.cut_off()

    async def send(self, text: str) -> None:
        self.sending_since = time.monotonic()
        await self.websocket.send_text(text)
        self.sending_since = None

"""Output bytes: `GET /runs/{id}/output/{oid}` and the live websocket.

GET streams the range a block at a time, so memory stays bounded whatever range is
asked for. A running program's output is read from its spool and capped at
`output.max_bytes` as stored outputs are (the head and the tail, with a line saying
how many bytes were cut between; `X-Apsis-Output-Cut` says it too); a finished run's
comes from the store, capped when it was stored.

WS: each `output_appended` or transition event of the run wakes the stream to read on
from its offset; there is no polling loop. The socket closes with 1000 once the run
is finished and every byte is sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.responses import StreamingResponse
from starlette.websockets import WebSocket

from ..model.states import FINISHED, State
from .errors import ApiError
from .params import Query, check_run_id
from .wsutil import close_quietly, deny, until_disconnect

if TYPE_CHECKING:
    from .app import Api

CHUNK = 64 * 1024
WAKE_TIMEOUT = 15.0  # a safety net only: events wake the stream
STORED_PIECE = 1 << 20  # a stored output is read (and decompressed) this much at a time


async def output_response(api: Api, run_id: str, output_id: str, start: int,
                          end: int | None) -> StreamingResponse | None:
    """The bytes [start, end) of an output as a streamed response; None if there is no
    such output."""
    headers = {"X-Apsis-Output-Start": str(start)}
    live = await api.service.open_live_output(run_id, output_id, start, end)
    if live is not None:
        if live.cut:
            headers["X-Apsis-Output-Cut"] = str(live.cut)
        return StreamingResponse(live.chunks, media_type="application/octet-stream", headers=headers)
    first = await api.service.read_output(run_id, output_id, start, _piece_end(start, end))
    if first is None:
        return None

    async def stored() -> AsyncIterator[bytes]:
        data, offset = first, start
        while data:
            yield data
            offset += len(data)
            if end is not None and offset >= end:
                return
            data = await api.service.read_output(run_id, output_id, offset, _piece_end(offset, end)) or b""

    return StreamingResponse(stored(), media_type="application/octet-stream", headers=headers)


def _piece_end(offset: int, end: int | None) -> int:
    return offset + STORED_PIECE if end is None else min(end, offset + STORED_PIECE)


async def output_ws(websocket: WebSocket) -> None:
    api: Api = websocket.app.state.api
    run_id = websocket.path_params["run_id"]
    output_id = websocket.path_params["output_id"]
    try:
        api.auth.check(websocket, "read", allow_query=True)
        start = Query(websocket, ("start", "token")).int("start", 0, 0)
        check_run_id(run_id)
        if await api.service.get_run(run_id) is None:
            raise ApiError(404, "unknown_run", f"no run {run_id}")
    except ApiError as err:
        await deny(websocket, err)
        return
    assert start is not None
    def subscribe() -> Any:
        return api.service.subscribe(64, lambda e: e.get("type") in ("output_appended", "run_transition")
                             and (e.get("run_id") or (e.get("run") or {}).get("run_id")) == run_id)

    sub = subscribe()
    try:
        await websocket.accept()

        async def stream() -> None:
            nonlocal sub
            offset = start
            while True:
                data = await api.service.read_output(run_id, output_id, offset, offset + CHUNK)
                if data:
                    await websocket.send_bytes(data)
                    offset += len(data)
                    continue
                jso = await api.service.get_run(run_id)
                if jso is None or State(jso["state"]) in FINISHED:
                    # Finished: the store holds everything; read once more, it may just have moved.
                    data = await api.service.read_output(run_id, output_id, offset, offset + CHUNK)
                    if data:
                        continue
                    await close_quietly(websocket, 1000, "run finished; all output sent")
                    return
                if sub.closed:
                    if not sub.overflowed:  # the daemon is stopping
                        await close_quietly(websocket, 1001, "daemon stopping")
                        return
                    sub = subscribe()
                    continue
                try:
                    await asyncio.wait_for(sub.get(), WAKE_TIMEOUT)
                except TimeoutError:
                    pass
                while not sub.queue.empty():  # several wake-ups mean one read
                    sub.queue.get_nowait()

        await until_disconnect(websocket, stream())
    finally:
        sub.close()

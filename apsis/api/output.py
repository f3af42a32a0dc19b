"""WS /runs/{id}/output/{oid}: live output as binary frames, driven by events.

Each `output_appended` or transition event of the run wakes the stream to read on
from its offset; there is no polling loop. The socket closes with 1000 once the run
is finished and every byte is sent.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.websockets import WebSocket

from ..model.states import FINISHED, State
from .errors import ApiError
from .params import Query, check_run_id
from .wsutil import close_quietly, deny, until_disconnect

if TYPE_CHECKING:
    from .app import Api

CHUNK = 64 * 1024
WAKE_TIMEOUT = 15.0  # a safety net only: events wake the stream


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

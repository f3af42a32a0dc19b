"""What both websockets need: refusing before the handshake, and noticing a client leave."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected

from .errors import ApiError

# What sending to or receiving from a client that has gone away raises.
_GONE = (WebSocketDisconnect, WebSocketDisconnected, OSError)


async def deny(websocket: WebSocket, err: ApiError) -> None:
    """Refuses the handshake with a real HTTP status and the usual JSON error body."""
    await websocket.send_denial_response(err.response())


async def until_disconnect(websocket: WebSocket, work: Awaitable[None]) -> None:
    """Runs `work` until it ends or the client goes away, whichever comes first.

    Without this a stream with nothing to send would never notice a closed client.
    """
    work_task = asyncio.ensure_future(work)

    async def watch() -> None:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return

    watch_task = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({work_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (work_task, watch_task):
            task.cancel()
        results = await asyncio.gather(work_task, watch_task, return_exceptions=True)
    for result in results:
        # The client leaving mid-send is the normal end of a stream, not an error.
        if isinstance(result, Exception) and not isinstance(result, _GONE):
            raise result


async def close_quietly(websocket: WebSocket, code: int, reason: str) -> None:
    try:
        await websocket.close(code, reason[:120])
    except (*_GONE, RuntimeError):  # already gone or closed: nothing to tell
        return

"""What both websockets need: refusing before the handshake, and noticing a client leave;
and the server side of sending one frame, built once, to many clients.

uvicorn's websocket protocol encodes a text message and frames it again for each client
(three copies of a 1 MiB frame each): 50 clients of the event stream cost ~1 ms each per
frame, most of a burst's fan-out.  `SharedFrameProtocol` also takes a whole frame's bytes
(`text_frame`), the same for every client of a server without extensions, and writes
them as they are; it says so in the ASGI scope's extensions (SHARED_FRAME), so an app on
another server sends the text as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketDisconnected
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Request
from websockets.protocol import State

from .errors import ApiError

# The ASGI scope extension, and the key of a "websocket.send" message, of a whole frame.
SHARED_FRAME = "apsis.shared_frame"

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


def text_frame(text: str) -> bytes:
    """`text` as one whole unmasked text frame, as a server without extensions sends it."""
    return Frame(Opcode.TEXT, text.encode()).serialize(mask=False)


def shares_frames(websocket: WebSocket) -> bool:
    """Whether the server takes frames from `text_frame` (see the module's docstring)."""
    return SHARED_FRAME in (websocket.scope.get("extensions") or {})


async def send_frame(websocket: WebSocket, frame: bytes) -> None:
    """Sends a frame from `text_frame`, if `shares_frames(websocket)`."""
    await websocket.send({"type": "websocket.send", SHARED_FRAME: frame})


# What `SharedFrameProtocol.send` uses of uvicorn's protocol besides its public methods.
_RELIED_ON = ("writable", "disconnected", "close_sent", "conn", "transport")


class SharedFrameProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websocket protocol (websockets-sansio), which also writes frames built
    once for many clients (the module's docstring)."""

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # none when the handshake was refused
        # With permessage-deflate each client's frames are its own: not offered then; nor
        # by a uvicorn whose protocol no longer has what `send` below relies on.
        if (scope is not None and not self.config.ws_per_message_deflate
                and all(hasattr(self, name) for name in _RELIED_ON)):
            scope["extensions"][SHARED_FRAME] = {}  # type: ignore[index]

    async def send(self, message: Any) -> None:
        frame = message.get(SHARED_FRAME)
        if frame is None:
            await super().send(message)
            return
        await self.writable.wait()
        if self.disconnected or self.close_sent or self.conn.state is not State.OPEN:
            raise ClientDisconnected()
        self.transport.write(frame)

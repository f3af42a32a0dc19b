"""The API socket the daemon binds up front (apsis.daemon.listen)."""

from __future__ import annotations

import asyncio
import socket

import pytest

from apsis.daemon import listen


async def _server_side_nodelay(sock: socket.socket) -> int:
    """TCP_NODELAY of the connection asyncio accepts on `sock`, as uvicorn would get it."""
    accepted: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def on_client(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = writer.get_extra_info("socket")
        accepted.set_result(conn.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(on_client, sock=sock)
    host, port = sock.getsockname()[:2]
    async with server:
        _reader, writer = await asyncio.open_connection(host, port)
        try:
            return await asyncio.wait_for(accepted, 5)
        finally:
            writer.close()


@pytest.mark.parametrize("bind", ["127.0.0.1:0", "[::1]:0"])
def test_accepted_connections_do_not_wait_for_nagle(bind: str) -> None:
    # Without TCP_NODELAY every keep-alive request (CLI, TUI, events) stalled ~40 ms on a
    # delayed ACK; asyncio sets it only when the listening socket's proto says TCP.
    try:
        sock = listen(bind)
    except OSError as exc:
        pytest.skip(f"cannot bind {bind}: {exc}")
    assert asyncio.run(_server_side_nodelay(sock)) != 0


def test_a_taken_address_fails_at_bind() -> None:
    first = listen("127.0.0.1:0")
    try:
        with pytest.raises(OSError):
            listen(f"127.0.0.1:{first.getsockname()[1]}")
    finally:
        first.close()


@pytest.mark.timeout(30)
def test_a_start_that_fails_after_the_store_opened_leaves_no_thread_behind(tmp_path) -> None:
    """Any error between opening the store and starting the engine closes the store: its
    thread, left running, kept `apsisctl serve` alive after the traceback, neither serving
    nor exiting.  (No jobs directory at all stands for an error nobody foresaw.)"""
    import threading

    from apsis.config import Config
    from apsis.daemon import serve

    config = Config(jobs=None, database=tmp_path / "apsis.db", bind="127.0.0.1:0")  # type: ignore[arg-type]
    before = set(threading.enumerate())
    with pytest.raises(Exception):  # noqa: B017 - which error is the loader's business
        asyncio.run(serve(config))
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()
            and not t.daemon]
    assert left == [], left

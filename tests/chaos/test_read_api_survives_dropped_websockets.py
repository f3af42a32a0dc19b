"""Issue 11.1: clients that drop a websocket at once must not wedge the read API.

A read transaction cut by the cancellation of its task used to stay open for good:
every later read failed ("cannot start a transaction within a transaction"), new runs
were invisible and `/alive` still said ok.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from http.client import HTTPConnection

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.integration.helpers import create, http, wait_run

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(90)]

JOBS = {"hello": "program: 'echo hello; sleep 0.2; echo world'\n"}


async def _drop(uri: str, abrupt: bool) -> None:
    """Opens a websocket and leaves at once: politely, or by cutting the TCP connection."""
    try:
        async with connect(uri, open_timeout=10) as ws:
            if abrupt:
                ws.transport.abort()
    except (OSError, websockets.ConnectionClosed):
        pass  # the connection cut under the close handshake; a timeout is a failure


def test_early_websocket_closes_leave_the_read_api_working(apsis_daemon):
    daemon = apsis_daemon(JOBS)
    ws_base = f"ws://127.0.0.1:{daemon.port}/api/v1"
    with http(daemon) as api:
        [first] = create(api, "hello")
        wait_run(api, first["run_id"])
        run_id = first["run_id"]

        async def probe() -> None:
            for i in range(12):
                await _drop(f"{ws_base}/runs/{run_id}/output/output", abrupt=bool(i % 2))
                await _drop(f"{ws_base}/events?since=0", abrupt=bool(i % 2))
            # And many at once, so that cancellations land mid-statement too.
            await asyncio.gather(*(
                _drop(f"{ws_base}/{path}", abrupt=bool(i % 2))
                for i in range(24)
                for path in (f"runs/{run_id}/output/output", "events?since=0")
            ))

        asyncio.run(probe())
        time.sleep(0.3)

        page = api.get("/runs")
        assert page.status_code == 200, page.text
        assert run_id in [r["run_id"] for r in page.json()["runs"]]
        stats = api.get("/control/stats")
        assert stats.status_code == 200, stats.text
        output = api.get(f"/runs/{run_id}/output/output")
        assert output.status_code == 200, output.text
        assert output.content == b"hello\nworld\n"
        alive = api.get("/alive")
        assert alive.status_code == 200, alive.text

        [later] = create(api, "hello")
        assert wait_run(api, later["run_id"])["state"] == "success"
        listed = api.get("/runs", params={"job_id": "hello"}).json()["runs"]
        assert later["run_id"] in [r["run_id"] for r in listed]


def test_alive_fails_when_the_database_cannot_be_read(apsis_daemon):
    """SPEC §1.10: `/alive` is 503, with the reason, once the database file is damaged;
    the requests that fail meanwhile are answered without losing the connection."""
    daemon = apsis_daemon(JOBS)
    with http(daemon) as api:
        [run] = create(api, "hello")
        wait_run(api, run["run_id"])
    # Another process on the file, as the sqlite3 shell would be: everything into the
    # file, then the file damaged behind the header, then a commit (of page 1, from its
    # cache) that makes the daemon's connections drop their caches and read the damage.
    other = sqlite3.connect(daemon.db, isolation_level=None)
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    other.execute("SELECT count(*) FROM sqlite_master").fetchall()
    size = daemon.db.stat().st_size
    with open(daemon.db, "r+b") as db:
        db.seek(100)
        db.write(b"\xff" * (size - 100))
    other.execute("PRAGMA user_version = 7")
    other.close()

    conn = HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    conn.connect()
    sock = conn.sock

    def call(method: str, path: str, body: bytes | None = None) -> tuple[int, dict]:
        conn.request(method, "/api/v1" + path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read())

    status, body = call("GET", "/alive")
    assert status == 503, body
    assert body["error"]["code"] == "store_unavailable"
    assert "malformed" in body["error"]["message"] and str(daemon.db) in body["error"]["message"]
    status, body = call("POST", "/runs", b'{"job_id": "hello"}')
    assert status >= 500 and body["error"]["message"], body
    assert call("GET", "/alive")[0] == 503
    assert conn.sock is sock, "the daemon closed the keep-alive connection after a 5xx"
    conn.close()

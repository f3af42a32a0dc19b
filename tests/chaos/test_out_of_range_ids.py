"""Issue 11.10: a run id or cursor too large for a database integer is "no such run".

It used to be a 500 (OverflowError in sqlite3), and uvicorn then dropped the client's
keep-alive connection too.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import json

import pytest
import websockets
from websockets.asyncio.client import connect

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(60)]

JOBS = {"hello": "program: 'echo hello'\n"}
HUGE = "r" + "9" * 29
JUST_OVER = f"r{2**63}"


def test_huge_run_ids_are_404_on_one_keep_alive_connection(apsis_daemon):
    daemon = apsis_daemon(JOBS)
    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=10)
    conn.connect()
    sock = conn.sock

    def call(method: str, path: str) -> tuple[int, dict]:
        conn.request(method, "/api/v1" + path, body=b"{}" if method == "POST" else None,
                     headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.getheader("connection") != "close", path
        return response.status, body

    for run_id in (HUGE, JUST_OVER, "r١٢"):  # the last: Arabic-Indic digits
        for method, path in [("GET", ""), ("GET", "/log"), ("GET", "/outputs"),
                             ("GET", "/output/output"), ("POST", "/stop"), ("POST", "/rerun")]:
            status, body = call(method, f"/runs/{run_id}{path}".replace("١٢", "%D9%A1%D9%A2"))
            assert status == 404, (method, path, body)
            assert body["error"]["code"] == "unknown_run", body
    cursor = base64.urlsafe_b64encode(f"2024-01-01T00:00:00.000000Z|{'9' * 25}".encode()).decode()
    status, body = call("GET", f"/runs?cursor={cursor}")
    assert status == 400 and body["error"]["code"] == "bad_cursor", body
    status, body = call("GET", "/alive")
    assert status == 200, body
    assert conn.sock is sock, "the daemon closed the keep-alive connection"
    conn.close()


def test_huge_run_ids_on_websockets_are_refused_cleanly(apsis_daemon):
    daemon = apsis_daemon(JOBS)
    base = f"ws://127.0.0.1:{daemon.port}/api/v1"

    async def statuses() -> list[int]:
        found = []
        for uri in (f"{base}/runs/{HUGE}/output/output", f"{base}/events?run_id={HUGE}"):
            with pytest.raises(websockets.InvalidStatus) as info:
                async with connect(uri, open_timeout=10):
                    pass
            found.append(info.value.response.status_code)
        return found

    assert asyncio.run(statuses()) == [404, 400]

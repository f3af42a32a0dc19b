"""Live output over the websocket, and the client's `output` stream."""

from __future__ import annotations

import asyncio

import pytest
import websockets
from websockets.asyncio.client import connect

from apsis.client import ApsisNotFound

JOBS = {
    "lines": "program: 'for i in 1 2 3 4 5; do echo line$i; sleep 0.2; done'\n",
    "slow lines": "program: 'for i in $(seq 1 12); do echo line$i; sleep 0.4; done'\n",
    "quiet": "program: {type: no-op}\n",
}
LINES = b"".join(b"line%d\n" % i for i in range(1, 6))


async def read_all(stream) -> bytes:
    data = b""
    async for chunk in stream:
        data += chunk
    return data


async def test_live_output_until_the_run_ends(daemon):
    async with daemon.client() as client:
        [run] = await client.create_runs("lines")
        data = await asyncio.wait_for(read_all(client.output(run["run_id"])), 30)
        assert data == LINES
        assert (await client.run(run["run_id"]))["state"] == "success"
        # Finished: the same bytes, from an offset, live or not.
        assert await read_all(client.output(run["run_id"], start=6)) == LINES[6:]
        assert await read_all(client.output(run["run_id"], follow=False)) == LINES
        assert await client.output_bytes(run["run_id"], start=6, end=12) == LINES[6:12]


async def test_output_of_a_run_not_started_yet(daemon):
    async with daemon.client() as client:
        [run] = await client.create_runs("lines", schedule="+1s")
        assert run["state"] == "scheduled"
        assert await asyncio.wait_for(read_all(client.output(run["run_id"])), 30) == LINES


async def test_frames_are_binary_and_close_is_1000(daemon):
    async with daemon.client() as client:
        [run] = await client.create_runs("lines")
    uri = f"ws://127.0.0.1:{daemon.port}/api/v1/runs/{run['run_id']}/output/output?start=0"
    async with connect(uri) as ws:
        frames = [frame async for frame in ws]
        assert all(isinstance(f, bytes) for f in frames)
        assert b"".join(frames) == LINES
        assert ws.close_code == 1000


async def test_no_output_and_unknown_runs(daemon):
    async with daemon.client() as client:
        [run] = await client.create_runs("quiet")
        assert await asyncio.wait_for(read_all(client.output(run["run_id"])), 30) == b""
        with pytest.raises(ApsisNotFound):
            await read_all(client.output("r999999"))
        with pytest.raises(ApsisNotFound):
            await read_all(client.output("bogus", follow=False))
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(f"ws://127.0.0.1:{daemon.port}/api/v1/runs/r1/output/output?start=x"):
            pass
    assert info.value.response.status_code == 400


async def test_output_resumes_across_a_daemon_kill(daemon):
    async with daemon.client(retry_for=60) as client:
        [run] = await client.create_runs("slow lines")
        data = b""
        killed = False
        async for chunk in client.output(run["run_id"]):
            data += chunk
            if not killed and data.count(b"\n") >= 2:
                killed = True
                await asyncio.to_thread(daemon.restart, True)
        assert data == b"".join(b"line%d\n" % i for i in range(1, 13))
        assert (await client.run(run["run_id"]))["state"] == "success"

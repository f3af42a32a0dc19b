"""The event stream: replay, live, no gap, no duplicate, restarts, slow clients."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections import defaultdict
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from apsis.client import ApsisError, ApsisUnavailable, Client

from .conftest import free_port

NOOP = {"noop": "program: {type: no-op}\n", "other": "program: {type: no-op}\n",
        "talks": "program: 'echo hello'\n"}
RUN_PATH = [("new", "scheduled"), ("scheduled", "starting"), ("starting", "running"),
            ("running", "success")]


async def wait_success(client: Client, job_id: str, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        page = await client.runs(job_id=job_id, states=["success"], limit=10000)
        if len(page["runs"]) >= count:
            return
        assert time.monotonic() < deadline, f"{len(page['runs'])}/{count} runs of {job_id} succeeded"
        await asyncio.sleep(0.1)


def successes(events: list[dict[str, Any]]) -> set[str]:
    return {e["run"]["run_id"] for e in events if e["type"] == "run_transition" and e["to"] == "success"}


async def collect_until(stream, done, timeout: float = 60.0) -> list[dict[str, Any]]:
    """Events from `stream` until `done(events)` (checked as events come and every 50 ms,
    since what `done` looks at may change between events); closes the stream."""
    events: list[dict[str, Any]] = []
    finished = asyncio.Event()

    async def run() -> None:
        async for event in stream:
            events.append(event)
            if done(events):
                finished.set()
                return

    task = asyncio.create_task(run())
    deadline = time.monotonic() + timeout
    try:
        while not finished.is_set() and not done(events):
            if task.done():
                task.result()  # raises what the stream raised
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"stream not done after {timeout}s ({len(events)} events)")
            await asyncio.sleep(0.05)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await stream.aclose()
    return events


def assert_contiguous(events: list[dict[str, Any]], after: int) -> None:
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(after + 1, after + 1 + len(seqs))), "gap or duplicate in seqs"


def assert_run_paths(events: list[dict[str, Any]], run_ids: set[str]) -> None:
    paths: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for e in events:
        if e["type"] == "run_transition":
            paths[e["run"]["run_id"]].append((e["from"], e["to"]))
    for run_id in run_ids:
        assert paths[run_id] == RUN_PATH, (run_id, paths[run_id])


async def test_1000_transitions_replayed_in_order_after_reconnect(apsis_daemon):
    daemon = apsis_daemon(NOOP)
    async with daemon.client() as client:
        since = (await client.alive())["seq"]
        [first] = await client.create_runs("noop")
        seen = await collect_until(client.events(since), lambda ev: first["run_id"] in successes(ev))
        last = seen[-1]["seq"]
        # Disconnected: 250 runs make 1000 transitions (and as many log entries).
        runs = await client.create_runs("noop", count=250)
        ids = {r["run_id"] for r in runs}
        await wait_success(client, "noop", 251)
        events = await collect_until(client.events(last), lambda ev: ids <= successes(ev))
    assert_contiguous(events, last)
    assert sum(e["type"] == "run_transition" for e in events) >= 1000
    assert_run_paths(events, ids)
    assert all({"seq", "ts", "type"} <= set(e) for e in events)


async def test_replay_joins_live_without_gap_or_duplicate(apsis_daemon):
    daemon = apsis_daemon(NOOP)
    async with daemon.client() as client:
        since = (await client.alive())["seq"]
        ids: set[str] = set()

        async def produce() -> None:
            for i in range(8):
                if i:
                    await asyncio.sleep(0.05)
                ids.update(r["run_id"] for r in await client.create_runs("noop", count=40))

        producer = asyncio.create_task(produce())
        await asyncio.sleep(0.2)  # the stream starts with a replay while runs keep coming
        events = await collect_until(client.events(since),
                                     lambda ev: producer.done() and ids <= successes(ev))
        await producer
    assert_contiguous(events, since)
    assert_run_paths(events, ids)


async def test_filters_in_replay_and_live(apsis_daemon):
    daemon = apsis_daemon(NOOP)
    async with daemon.client() as client:
        since = (await client.alive())["seq"]
        [a] = await client.create_runs("noop")
        [b] = await client.create_runs("other")
        await wait_success(client, "other", 1)
        by_run = await collect_until(client.events(since, run_id=a["run_id"]),
                                     lambda ev: a["run_id"] in successes(ev))
        assert {e.get("run_id") or e["run"]["run_id"] for e in by_run} == {a["run_id"]}
        assert {e["type"] for e in by_run} == {"run_transition", "run_log"}
        by_type = await collect_until(client.events(since, types=["run_transition"]),
                                      lambda ev: b["run_id"] in successes(ev))
        assert {e["type"] for e in by_type} == {"run_transition"}
        by_job = await collect_until(client.events(since, job_id="other"),
                                     lambda ev: b["run_id"] in successes(ev))
        assert {e["run"]["job_id"] for e in by_job if "run" in e} == {"other"}
        # A job's filter lets its runs' logs and output through, not only transitions.
        [c] = await client.create_runs("talks")
        by_job = await collect_until(client.events(since, job_id="talks"),
                                     lambda ev: c["run_id"] in successes(ev))
        assert {e["type"] for e in by_job} == {"run_transition", "run_log", "output_appended"}
        assert {e.get("job_id") or e["run"]["job_id"] for e in by_job} == {"talks"}
        # Live: the filter applies to new events too.
        live_since = (await client.alive())["seq"]
        stream = client.events(live_since, job_id="noop", types=["run_transition"])
        task = asyncio.create_task(collect_until(stream, lambda ev: len(successes(ev)) >= 1))
        await asyncio.sleep(0.3)
        await client.create_runs("other")
        await client.create_runs("noop")
        live = await task
        assert {(e["type"], e["run"]["job_id"]) for e in live} == {("run_transition", "noop")}


async def test_reset_when_since_is_no_longer_retained(apsis_daemon):
    daemon = apsis_daemon(NOOP, config="events: {retain: 1s}\n")
    async with daemon.client() as client:
        await client.create_runs("noop", count=3)
        await wait_success(client, "noop", 3)
    await asyncio.sleep(1.5)
    await asyncio.to_thread(daemon.restart, False)  # trims old events at start
    async with daemon.client() as client:
        deadline = time.monotonic() + 10
        while (await client.stats())["store"]["first_retained_seq"] <= 2:
            assert time.monotonic() < deadline, "old events were not trimmed"
            await asyncio.sleep(0.1)
        [reset] = await collect_until(client.events(1), lambda ev: len(ev) >= 1)
        assert reset["type"] == "reset" and isinstance(reset["seq"], int)
        # A seq the daemon never reached (another database): reset too.
        [future] = await collect_until(client.events(10**9), lambda ev: len(ev) >= 1)
        assert future["type"] == "reset"
        # After a reset the stream goes on live from the seq it gave.
        stream = client.events(10**9)
        task = asyncio.create_task(collect_until(stream, lambda ev: len(successes(ev)) >= 1))
        await asyncio.sleep(0.3)
        [run] = await client.create_runs("noop")
        events = await task
        assert events[0]["type"] == "reset"
        assert run["run_id"] in successes(events)
        assert_contiguous(events[1:], events[0]["seq"])


async def test_sigkill_restart_keeps_seq_increasing_and_client_resumes(apsis_daemon):
    daemon = apsis_daemon(NOOP)
    async with daemon.client(retry_for=60) as client:
        since = (await client.alive())["seq"]
        ids: set[str] = set()
        events: list[dict[str, Any]] = []
        done = asyncio.Event()

        async def follow() -> None:
            async for event in client.events(since):
                events.append(event)
                if done.is_set() and ids <= successes(events):
                    return

        follower = asyncio.create_task(follow())
        ids.update(r["run_id"] for r in await client.create_runs("noop", count=50))
        await wait_success(client, "noop", 50)
        await asyncio.to_thread(daemon.restart, True)  # SIGKILL under the client's feet
        ids.update(r["run_id"] for r in await client.create_runs("noop", count=50))
        done.set()
        await asyncio.wait_for(follower, 60)
    assert_contiguous(events, since)
    assert_run_paths(events, ids)
    statuses = [e["status"] for e in events if e["type"] == "daemon"]
    assert "started" in statuses  # the new daemon's start, between the two batches


async def raw_events(uri: str, count: int, timeout: float = 60.0) -> tuple[list[dict[str, Any]], int]:
    """`count` events read as they come from one websocket (no reconnection, so a
    cut-off shows), and how many frames carried them."""
    events: list[dict[str, Any]] = []
    frames = 0
    async with connect(uri, max_size=2**24) as ws:
        while len(events) < count:
            found = json.loads(await asyncio.wait_for(ws.recv(), timeout))
            events.extend(found if isinstance(found, list) else [found])
            frames += 1
    return events, frames


async def test_a_burst_of_20000_events_reaches_every_reader_and_cuts_off_one_that_stopped(apsis_daemon):
    # A reader that stops reading may fall 500 events behind before it is cut off;
    # readers that keep reading are never cut off, however big the burst.
    daemon = apsis_daemon(NOOP, env={"APSIS_EVENT_QUEUE": "500"})
    stalled = stalled_websocket(daemon.port, "/api/v1/events")
    try:
        async with daemon.client() as client:
            since = (await client.alive())["seq"]
            uri = f"ws://127.0.0.1:{daemon.port}/api/v1/events?since={since}"
            readers = [asyncio.create_task(raw_events(uri + "&batch=1", 20_000)),
                       asyncio.create_task(raw_events(uri, 20_000))]
            await asyncio.sleep(0.3)
            # 10 000 runs for tomorrow: 20 000 events (a transition and a log entry each)
            # published at once.
            tomorrow = time.time() + 86400
            body = {"job_id": "noop", "count": 10_000,
                    "times": {"schedule": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(tomorrow))}}
            async with httpx.AsyncClient(timeout=60) as http:
                (await http.post(daemon.api + "/runs", json=body)).raise_for_status()
            (batched, frames), (single, messages) = await asyncio.gather(*readers)
            for events in (batched, single):
                assert_contiguous(events, since)
                assert sum(e["type"] == "run_transition" for e in events) == 10_000
            assert messages == 20_000
            assert frames < 200, f"{frames} frames for 20 000 events: not batched"
            deadline = time.monotonic() + 30
            while True:
                async with httpx.AsyncClient() as http:
                    metrics = (await http.get(daemon.api + "/metrics")).text
                cut = [line for line in metrics.splitlines()
                       if line.startswith("apsis_event_clients_cut_off")]
                if cut and float(cut[0].split()[-1]) >= 1:
                    break
                assert time.monotonic() < deadline, "the stalled client was never cut off"
                await asyncio.sleep(0.2)
            assert float(cut[0].split()[-1]) == 1  # only the stalled one
        # It reads at last: what was on its way, then a close 4008 saying where to resume.
        tail = await asyncio.to_thread(read_to_end, stalled)
        assert re.search(rb"\x88.\x0f\xa8fell behind: reconnect with since=\d+", tail[-200:])
    finally:
        stalled.close()


def stalled_websocket(port: int, path: str) -> socket.socket:
    """A websocket client that stops reading after the handshake (a tiny receive buffer,
    so the daemon's sends block soon)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                 "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 "Sec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def read_to_end(sock: socket.socket, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    chunks = []
    while chunk := sock.recv(1 << 20):
        chunks.append(chunk)
        if chunks[-1][-200:].find(b"reconnect with since=") >= 0:
            break
    return b"".join(chunks)


async def test_client_backs_off_from_a_server_that_hangs_up():
    connections = 0

    async def hang_up(ws: Any) -> None:
        nonlocal connections
        connections += 1
        await ws.close()

    port = free_port()
    async with websockets.serve(hang_up, "127.0.0.1", port):
        client = Client(f"http://127.0.0.1:{port}", retry_for=None)
        stream = client.events(0)
        task = asyncio.create_task(collect_until(stream, lambda ev: False, timeout=2.0))
        with pytest.raises(asyncio.TimeoutError):
            await task
        await client.close()
    assert 2 <= connections <= 15, connections


async def test_unavailable_after_retry_for():
    port = free_port()
    client = Client(f"http://127.0.0.1:{port}", retry_for=0.5)
    started = time.monotonic()
    with pytest.raises(ApsisUnavailable) as info:
        await client.alive()
    assert f"127.0.0.1:{port}" in info.value.message
    assert time.monotonic() - started < 5
    with pytest.raises(ApsisUnavailable):
        await collect_until(client.events(0), lambda ev: False, timeout=10)
    await client.close()


RT = "read-token-0123456789"  # at least 16 characters, or the daemon refuses it


async def test_event_stream_needs_a_token(apsis_daemon):
    daemon = apsis_daemon(NOOP, config=f"api: {{tokens: {{{RT}: read}}}}\n", token=RT)
    uri = f"ws://127.0.0.1:{daemon.port}/api/v1/events"
    with pytest.raises(websockets.InvalidStatus) as info:
        async with connect(uri):
            pass
    assert info.value.response.status_code == 401
    assert json.loads(info.value.response.body)["error"]["code"] == "unauthorized"
    async with connect(uri + f"?token={RT}&since=0") as ws:
        first = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert first["seq"] >= 1
    with pytest.raises(ApsisError) as refused:
        await collect_until(Client(daemon.url, "bad").events(0), lambda ev: len(ev) >= 1)
    assert refused.value.status == 401
    async with daemon.client() as client:
        [event] = await collect_until(client.events(0), lambda ev: len(ev) >= 1)
        assert event["seq"] == 1
        with pytest.raises(ApsisError) as forbidden:
            await client.create_runs("noop")
        assert forbidden.value.status == 403 and forbidden.value.code == "forbidden"
    assert f"token={RT}" not in daemon.log_text()
    assert "token=***" in daemon.log_text()


async def test_bad_stream_parameters_are_refused(apsis_daemon):
    daemon = apsis_daemon(NOOP)
    for query in ("since=-1", "since=abc", "run_id=bogus", "nope=1",
                  "type=run_transition&type=run_transitions"):
        with pytest.raises(websockets.InvalidStatus) as info:
            async with connect(f"ws://127.0.0.1:{daemon.port}/api/v1/events?{query}"):
                pass
        assert info.value.response.status_code == 400, query
    # A type that never comes would have been a stream silent for ever: the refusal lists them.
    assert b"unknown event type 'run_transitions'; types are: run_transition, run_log" in \
        info.value.response.body


async def test_unix_socket_daemon(apsis_daemon):
    daemon = apsis_daemon(NOOP, unix=True)
    async with Client(daemon.url) as client:
        alive = await client.alive()
        [run] = await client.create_runs("noop")
        events = await collect_until(client.events(alive["seq"]),
                                     lambda ev: run["run_id"] in successes(ev))
        assert_run_paths(events, {run["run_id"]})

"""Many readers of one burst: each batched frame is built once and written to every
reader alike (apsis.api.wsutil.SharedFrameProtocol); what each reader gets is still
its own stream, in text frames (SPEC §1.7)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect

NOOP = {"noop": "program: {type: no-op}\n"}
RUNS = 200
EVENTS = 8 * RUNS  # four transitions of each run, each with its log entry


async def read_frames(uri: str, count: int) -> list[str | bytes]:
    """Frames as received, until they hold `count` events."""
    frames: list[str | bytes] = []
    seen = 0
    async with connect(uri, max_size=2**24) as ws:
        while seen < count:
            frame = await asyncio.wait_for(ws.recv(), 60)
            frames.append(frame)
            events = json.loads(frame)
            seen += len(events) if isinstance(events, list) else 1
    return frames


def events_of(frames: list[str | bytes]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for frame in frames:
        found = json.loads(frame)
        events.extend(found if isinstance(found, list) else [found])
    return events


@pytest.mark.timeout(120)
async def test_readers_of_one_burst_get_text_frames_each_with_their_own_filter(apsis_daemon):
    daemon = apsis_daemon(NOOP)
    async with httpx.AsyncClient(base_url=daemon.api, timeout=60) as http:
        since = (await http.get("/alive")).json()["seq"]
        uri = f"ws://127.0.0.1:{daemon.port}/api/v1/events?since={since}"
        readers = [asyncio.create_task(read_frames(uri + "&batch=1", EVENTS)) for _ in range(5)]
        transitions = asyncio.create_task(read_frames(uri + "&batch=1&type=run_transition",
                                                      EVENTS // 2))
        single = asyncio.create_task(read_frames(uri, EVENTS))
        await asyncio.sleep(0.3)
        (await http.post("/runs", json={"job_id": "noop", "count": RUNS})).raise_for_status()
        batched = await asyncio.gather(*readers)
        filtered, one_by_one = await transitions, await single

    for frames in [*batched, filtered, one_by_one]:
        assert all(isinstance(frame, str) for frame in frames), "a binary frame"
    assert all(isinstance(json.loads(frame), list) for frames in batched for frame in frames)
    everything = events_of(batched[0])
    seqs = [event["seq"] for event in everything]
    assert seqs == list(range(since + 1, since + 1 + len(seqs)))  # no gap, no duplicate
    assert len(everything) == EVENTS
    for frames in batched[1:]:
        assert events_of(frames) == everything
    assert events_of(one_by_one) == everything
    assert events_of(filtered) == [e for e in everything if e["type"] == "run_transition"]

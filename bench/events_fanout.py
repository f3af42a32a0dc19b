"""events_p99_ms_50subs: event delivery lag to 50 websocket subscribers during a burst.

    .venv/bin/python -m bench.events_fanout [--quick]

A daemon runs a burst of no-op runs (one POST); 50 clients follow /events. The lag
of an event is its arrival time at a client minus its `ts` (when the engine made
the change, before the commit). The baseline is the same burst to one subscriber,
so the ratio is the cost of fanning out, not of the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apsis.lib.timefmt import parse_time
from tests.integration.conftest import Daemon

JOBS = {"burst": "program: {type: no-op}\n"}


async def _burst_lags(daemon: Daemon, subscribers: int, runs: int) -> list[float]:
    """Lags in ms of every event at every subscriber, for one burst of `runs` runs."""
    import httpx
    from websockets.asyncio.client import connect

    async with httpx.AsyncClient(base_url=daemon.api, timeout=60) as http:
        since = (await http.get("/alive")).json()["seq"]
        uri = f"ws://127.0.0.1:{daemon.port}/api/v1/events?since={since}"
        sockets = [await connect(uri, max_size=2**24, max_queue=None) for _ in range(subscribers)]
        arrivals: list[list[tuple[float, str]]] = [[] for _ in sockets]
        finals = runs

        async def follow(ws, out: list[tuple[float, str]]) -> None:
            done = 0
            async for message in ws:
                out.append((time.time(), message))  # parse later: keep the client cheap
                if '"to":"success"' in message:
                    done += 1
                    if done >= finals:
                        return

        tasks = [asyncio.create_task(follow(ws, out)) for ws, out in zip(sockets, arrivals)]
        await asyncio.sleep(0.2)
        (await http.post("/runs", json={"job_id": "burst", "count": runs})).raise_for_status()
        await asyncio.wait_for(asyncio.gather(*tasks), 300)
        for ws in sockets:
            await ws.close()
    lags = []
    for out in arrivals:
        for arrived, message in out:
            sent = parse_time(json.loads(message)["ts"]).timestamp()
            lags.append((arrived - sent) * 1000)
    return lags


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(runs: int, subscribers: int = 50) -> tuple[float, float, int]:
    """(p99 ms with `subscribers`, p99 ms with one, events per subscriber)."""
    with tempfile.TemporaryDirectory(prefix="apsis-bench-") as tmp:
        root = Path(tmp)
        results = []
        for n in (1, subscribers):
            daemon = Daemon(root / f"d{n}", JOBS)
            try:
                daemon.start()
                lags = asyncio.run(_burst_lags(daemon, n, runs))
            finally:
                daemon.cleanup()
            results.append((_p99(lags), len(lags) // n))
    (one, _), (many, per_sub) = results
    return many, one, per_sub


def run(quick: bool) -> dict:
    many, one, _ = measure(200 if quick else 1000)
    return {"events_p99_ms_50subs": {"value": round(many, 2), "unit": "ms",
                                     "baseline": round(one, 2)}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))

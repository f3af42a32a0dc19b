"""soak_rss_growth_mb, soak_loop_lag_p99_ms: the daemon under steady load for 10 minutes.

    .venv/bin/python -m bench --soak        (or `make soak`; --quick: 1 minute)
    .venv/bin/python -m bench.soak [--seconds N]

Not part of `make bench` (it takes ten minutes) nor of the tests. One daemon gets 50
runs of `shell: true` a second (a POST of 5 every 100 ms) while 20 websocket clients
keep connecting and dropping: each follows the event stream (replaying from a recent
seq, or live) or a recent run's live output for a random few seconds, then leaves,
cleanly or by cutting the connection, as real terminals do (issue 11.1 was one early
close wedging the daemon).

Measured: the daemon's RSS (from /proc) and its event-loop lag (its own probe, the
`apsis_event_loop_lag_seconds` histogram of /metrics). `soak_rss_growth_mb` is the RSS
at the end minus the RSS after a warm-up under the same load (caches full), with that
warm RSS as its baseline; `soak_loop_lag_p99_ms` is the p99 under load, with the p99 of
the same daemon idle before the load as its baseline. A daemon that stops answering,
a request refused or a run left unfinished fails the benchmark.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.conftest import Daemon  # noqa: E402  (the same daemon the tests start)

JOBS = {"true": "program: 'true'\n"}
RATE = 50  # runs per second
TICK = 0.1  # seconds between POSTs (RATE * TICK runs each)
CLIENTS = 20
IDLE_SECONDS = 30  # the idle daemon's loop lag, for the baseline
WARMUP_FRACTION = 0.1  # of the loaded time, before the RSS reference is taken
SAMPLE_SECONDS = 5
LOOP_LAG = "apsis_event_loop_lag_seconds"


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def lag_buckets(metrics_text: str) -> dict[float, float]:
    """The loop-lag histogram's cumulative counts by upper bound (seconds)."""
    buckets = {}
    for line in metrics_text.splitlines():
        if line.startswith(LOOP_LAG + "_bucket{"):
            labels, value = line.rsplit(" ", 1)
            bound = labels.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(value)
    if not buckets:
        raise RuntimeError(f"/metrics has no {LOOP_LAG} histogram")
    return buckets


def quantile(q: float, before: dict[float, float], after: dict[float, float]) -> float:
    """The q-quantile of the observations between two scrapes, interpolated inside its
    bucket as Prometheus's histogram_quantile does (the top finite bound if beyond it)."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1]
    if total <= 0:
        raise RuntimeError("no loop-lag observations between the two scrapes")
    rank = q * total
    lower, below = 0.0, 0.0
    for bound, count in zip(bounds, counts, strict=True):
        if count >= rank:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-12)
        lower, below = bound, count
    return lower


class Load:
    """The workload and what it saw; anything unexpected ends up in `problems`."""

    def __init__(self, daemon: Daemon) -> None:
        self.daemon = daemon
        self.ws_base = daemon.api.replace("http://", "ws://")
        self.run_ids: list[str] = []
        self.posted = 0
        self.connections = 0
        self.frames = 0
        self.problems: list[str] = []
        self.stopping = asyncio.Event()

    async def post_runs(self, http: httpx.AsyncClient, seconds: float) -> None:
        """RATE runs a second, on fixed deadlines so a slow answer does not lower the rate."""
        per_tick = round(RATE * TICK)
        start = time.monotonic()
        ticks = int(seconds / TICK)
        pending: set[asyncio.Task] = set()
        for i in range(ticks):
            await asyncio.sleep(max(0.0, start + i * TICK - time.monotonic()))
            task = asyncio.create_task(self._post(http, per_tick))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)

    async def _post(self, http: httpx.AsyncClient, count: int) -> None:
        try:
            response = await http.post("/runs", json={"job_id": "true", "count": count})
        except httpx.HTTPError as exc:
            self.problems.append(f"POST /runs: {type(exc).__name__}: {exc}")
            return
        if response.status_code != 201:
            self.problems.append(f"POST /runs: {response.status_code} {response.text[:200]}")
            return
        runs = response.json()["runs"]
        self.posted += len(runs)
        self.run_ids.extend(r["run_id"] for r in runs)
        del self.run_ids[:-200]  # recent runs are enough for output clients

    async def client(self, http: httpx.AsyncClient, rng: random.Random) -> None:
        """Connect, read for a while, drop; again until the load stops."""
        while not self.stopping.is_set():
            if rng.random() < 0.7 or not self.run_ids:
                seq = (await http.get("/alive")).json()["seq"]
                since = f"since={max(0, seq - rng.randint(0, 2000))}&" if rng.random() < 0.5 else ""
                uri = f"{self.ws_base}/events?{since}batch=1"
            else:
                uri = f"{self.ws_base}/runs/{rng.choice(self.run_ids)}/output/output"
            try:
                async with websockets.connect(uri, max_size=None, compression=None,
                                              open_timeout=30, close_timeout=2) as ws:
                    self.connections += 1
                    stay = time.monotonic() + rng.uniform(0.0, 5.0)
                    while time.monotonic() < stay:
                        try:
                            await asyncio.wait_for(ws.recv(), timeout=max(0.01, stay - time.monotonic()))
                            self.frames += 1
                        except TimeoutError:
                            break
                    if rng.random() < 0.5:
                        ws.transport.abort()  # dropped: no close frame, as a killed terminal
            except websockets.ConnectionClosedOK:
                pass  # an output stream ends when its run is finished
            except (OSError, websockets.WebSocketException, TimeoutError) as exc:
                if not self.stopping.is_set():
                    self.problems.append(f"websocket {uri}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(rng.uniform(0.0, 0.5))


async def _scrape(http: httpx.AsyncClient) -> dict[float, float]:
    return lag_buckets((await http.get("/metrics")).text)


async def soak(daemon: Daemon, seconds: float, seed: int) -> dict:
    assert daemon.pid is not None
    pid = daemon.pid
    load = Load(daemon)
    async with httpx.AsyncClient(base_url=daemon.api, timeout=60,
                                 limits=httpx.Limits(max_connections=50)) as http:
        idle_from = await _scrape(http)
        await asyncio.sleep(IDLE_SECONDS)
        idle_to = await _scrape(http)

        clients = [asyncio.create_task(load.client(http, random.Random(seed + i)))
                   for i in range(CLIENTS)]
        poster = asyncio.create_task(load.post_runs(http, seconds))
        started = time.monotonic()
        warm_at = started + seconds * WARMUP_FRACTION
        warm_rss = None
        loaded_from = None
        samples = []
        while not poster.done():
            await asyncio.wait({poster}, timeout=SAMPLE_SECONDS)
            elapsed = time.monotonic() - started
            samples.append((round(elapsed), round(rss_mb(pid), 1)))
            if warm_rss is None and time.monotonic() >= warm_at:
                warm_rss = rss_mb(pid)
                loaded_from = await _scrape(http)
            alive = await http.get("/alive")
            if alive.status_code != 200:
                load.problems.append(f"/alive: {alive.status_code} {alive.text[:200]}")
            print(f"soak {elapsed:5.0f}s rss {samples[-1][1]:7.1f} MB runs {load.posted} "
                  f"ws {load.connections} frames {load.frames}", file=sys.stderr)
        await poster
        end_rss = rss_mb(pid)
        loaded_to = await _scrape(http)
        load.stopping.set()
        await asyncio.gather(*clients)
        unfinished = await _wait_finished(http, load.posted)
    if unfinished:
        load.problems.append(f"{unfinished} of {load.posted} runs unfinished 60 s after the load")
    if load.problems:
        raise RuntimeError(f"{len(load.problems)} problem(s) under load, first: "
                           + "; ".join(load.problems[:5]))
    assert warm_rss is not None and loaded_from is not None
    print(f"soak: {load.posted} runs in {seconds:.0f}s, {load.connections} websocket "
          f"connections, RSS samples {json.dumps(samples)}", file=sys.stderr)
    return {
        "soak_rss_growth_mb": {"value": round(end_rss - warm_rss, 1), "unit": "MB",
                               "baseline": round(warm_rss, 1)},
        "soak_loop_lag_p99_ms": {"value": round(quantile(0.99, loaded_from, loaded_to) * 1000, 1),
                                 "unit": "ms",
                                 "baseline": round(quantile(0.99, idle_from, idle_to) * 1000, 1)},
    }


async def _wait_finished(http: httpx.AsyncClient, posted: int, timeout: float = 60) -> int:
    """How many runs are still unfinished after `timeout` (0 once all are)."""
    deadline = time.monotonic() + timeout
    while True:
        stats = (await http.get("/control/stats")).json()
        if stats["unfinished_runs"] == 0 or time.monotonic() > deadline:
            return stats["unfinished_runs"]
        await asyncio.sleep(1)


def run(quick: bool, seconds: float | None = None, seed: int = 11) -> dict:
    seconds = seconds or (60 if quick else 600)
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp), JOBS)
        daemon.start()
        try:
            return asyncio.run(soak(daemon, seconds, seed))
        finally:
            daemon.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one minute instead of ten")
    parser.add_argument("--seconds", type=float, help="how long to load the daemon")
    opts = parser.parse_args()
    print(json.dumps(run(opts.quick, opts.seconds), indent=2))

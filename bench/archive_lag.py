"""archive_loop_lag_p99_ms: the daemon's event-loop lag while it archives old runs.

A daemon starts on a database of 1 000 000 finished runs (200 000 with --quick) and is
asked to archive every run older than a day: `POST /control/archive`, which runs the
same `Engine.archive_runs` as the `runs.retain` loop, so the bench need not wait for
the loop's first pass. The lag is the daemon's own probe (`apsis_event_loop_lag_seconds`
in /metrics, a sleep of 0.25 s timed on the loop, as the soak bench reads it): its p99
between a scrape before and one after the archive. The baseline is the same p99 over
IDLE_SECONDS of the same daemon idle, just before. `/alive` latency is printed too; it
is not the metric, since /alive reads the database and so waits on the disk as well.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.soak import lag_buckets, quantile  # noqa: E402
from bench.startup_1m import JOBS  # noqa: E402
from bench.store_1m import build_db  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402

IDLE_SECONDS = 30.0
PROBE_SECONDS = 0.05  # between /alive requests


def alive_latencies(http: httpx.Client, done: threading.Event) -> list[float]:
    """`/alive` latencies in ms, one every PROBE_SECONDS, until `done` is set."""
    samples = []
    while not done.is_set():
        t0 = time.perf_counter()
        http.get("/alive").raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, PROBE_SECONDS - (time.perf_counter() - t0)))
    return samples


def measure(root: Path, n: int) -> tuple[float, float, float, float]:
    """(archiving loop-lag p99 ms, idle p99 ms, /alive p99 ms while archiving, seconds)."""
    build_db(str(root / "apsis.db"), n)
    daemon = Daemon(root, JOBS, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"}, args=["--since", "now"],
                    config=f"runs: {{retain: 1d, archive: {root / 'archive.db'}}}\n")
    try:
        daemon.start(timeout=300)
        with httpx.Client(base_url=daemon.api, timeout=60) as http:
            def scrape() -> dict[float, float]:
                return lag_buckets(http.get("/metrics").text)

            time.sleep(2)  # start-up's own work done
            idle_from = scrape()
            time.sleep(IDLE_SECONDS)
            idle_to = scrape()
            done = threading.Event()
            result: dict = {}

            def archive() -> None:
                with httpx.Client(base_url=daemon.api, timeout=3600) as admin:
                    t0 = time.monotonic()
                    result["response"] = admin.post("/control/archive", params={"older_than": "1d"})
                    result["seconds"] = time.monotonic() - t0
                done.set()

            busy_from = scrape()
            worker = threading.Thread(target=archive)
            worker.start()
            alive = alive_latencies(http, done)
            worker.join()
            busy_to = scrape()
        response = result["response"]
        response.raise_for_status()
        if response.json()["moved"] != n:
            raise RuntimeError(f"archived {response.json()['moved']} runs of {n}")
    finally:
        daemon.cleanup()
    return (quantile(0.99, busy_from, busy_to) * 1000, quantile(0.99, idle_from, idle_to) * 1000,
            statistics.quantiles(alive, n=100)[98], result["seconds"])


def run(quick: bool) -> dict:
    n = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        busy, idle, alive, seconds = measure(Path(tmp), n)
    print(f"archive_lag: {n} runs archived in {seconds:.1f}s; /alive p99 meanwhile {alive:.1f} ms",
          file=sys.stderr)
    return {"archive_loop_lag_p99_ms": {"value": round(busy, 2), "unit": "ms", "baseline": round(idle, 2)}}


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

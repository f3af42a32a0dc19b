"""archive_loop_lag_p99_ms: the daemon's event-loop lag while it archives old runs.

A daemon starts on a database of 1 000 000 finished runs (200 000 with --quick) and is
asked to archive every run older than a day: `POST /control/archive`, which runs the
same `Engine.archive_runs` as the `runs.retain` loop, so the bench need not wait for
the loop's first pass. Meanwhile a client asks `GET /alive` every PROBE_SECONDS; the
lag is each answer's latency, so a loop blocked by archiving shows at once (the
daemon's own probe, 4 a second, gives too few samples for a p99 over a minute).
The baseline is the same probe on the same daemon idle, just before: what an answer
costs with nothing in its way.
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
from bench.startup_1m import JOBS  # noqa: E402
from bench.store_1m import build_db  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402

PROBE_SECONDS = 0.05
IDLE_SECONDS = 10.0


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100)[98]


def probe(http: httpx.Client, until: threading.Event | float) -> list[float]:
    """`/alive` latencies in ms, one every PROBE_SECONDS, until the event is set or the
    deadline (monotonic) passes."""
    samples = []
    while not (until.is_set() if isinstance(until, threading.Event) else time.monotonic() > until):
        t0 = time.perf_counter()
        http.get("/alive").raise_for_status()
        samples.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, PROBE_SECONDS - (time.perf_counter() - t0)))
    return samples


def measure(root: Path, n: int) -> tuple[float, float, int, float]:
    """(archiving p99 ms, idle p99 ms, runs moved, seconds the archive took)."""
    build_db(str(root / "apsis.db"), n)
    daemon = Daemon(root, JOBS, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"}, args=["--since", "now"],
                    config=f"runs: {{retain: 1d, archive: {root / 'archive.db'}}}\n")
    try:
        daemon.start(timeout=300)
        with httpx.Client(base_url=daemon.api, timeout=60) as http:
            probe(http, time.monotonic() + 2)  # warm: connections, first requests
            idle = probe(http, time.monotonic() + IDLE_SECONDS)
            done = threading.Event()
            result: dict = {}

            def archive() -> None:
                with httpx.Client(base_url=daemon.api, timeout=3600) as admin:
                    t0 = time.monotonic()
                    response = admin.post("/control/archive", params={"older_than": "1d"})
                    result["seconds"] = time.monotonic() - t0
                    result["response"] = response
                done.set()

            worker = threading.Thread(target=archive)
            worker.start()
            busy = probe(http, done)
            worker.join()
        response = result["response"]
        response.raise_for_status()
        moved = response.json()["moved"]
        if moved != n:
            raise RuntimeError(f"archived {moved} runs of {n}")
    finally:
        daemon.cleanup()
    return p99(busy), p99(idle), moved, result["seconds"]


def run(quick: bool) -> dict:
    n = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as tmp:
        busy, idle, moved, seconds = measure(Path(tmp), n)
    print(f"archive_lag: {moved} runs archived in {seconds:.1f}s", file=sys.stderr)
    return {"archive_loop_lag_p99_ms": {"value": round(busy, 2), "unit": "ms", "baseline": round(idle, 2)}}


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

"""startup_s_1m, rss_mb_1m, get_runs_job_p50_ms_1m: a daemon on a million finished runs.

The baselines are the same daemon on an empty database, measured in the same run:
a million runs must cost disk, not start-up time or memory.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.store_1m import build_db  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402

JOBS = {"group0/job0": "program: {type: no-op}\n"}


def rss_mb(pid: int) -> float:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
    return float("nan")


def measure(root: Path, n: int, queries: int) -> tuple[float, float, float | None]:
    """(seconds to /alive, RSS in MB after start, GET /runs?job_id= p50 in ms)."""
    db = root / "apsis.db"
    if n:
        build_db(str(db), n)
    daemon = Daemon(root, JOBS, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"}, args=["--since", "now"])
    starts = []
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            daemon.start()
            starts.append(time.perf_counter() - t0)
            rss = rss_mb(daemon.pid)
            daemon.stop()
        daemon.start()
        p50 = None
        if queries:
            with httpx.Client(base_url=daemon.api, timeout=30) as api:
                times = []
                for i in range(queries):
                    t0 = time.perf_counter()
                    api.get("/runs", params={"job_id": f"group{(i % 500) // 50}/job{i % 500}", "limit": 100}).raise_for_status()
                    times.append((time.perf_counter() - t0) * 1000)
                p50 = statistics.median(times)
    finally:
        daemon.cleanup()
    return statistics.median(starts), rss, p50


def run(quick: bool) -> dict:
    n = 200_000 if quick else 1_000_000
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as full:
        empty_start, empty_rss, _ = measure(Path(empty), 0, 0)
        full_start, full_rss, p50 = measure(Path(full), n, 200)
    return {
        "startup_s_1m": {"value": round(full_start, 3), "unit": "s", "baseline": round(empty_start, 3)},
        "rss_mb_1m": {"value": round(full_rss, 1), "unit": "MB", "baseline": round(empty_rss, 1)},
        "get_runs_job_p50_ms_1m": {"value": round(p50, 2), "unit": "ms", "baseline": None},
    }


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

"""big_output_rss_growth_mb: daemon memory while a program writes 1 GiB of output.

The agent spools output to a file and the store compresses it in chunks, so the
daemon's RSS should stay within a few MiB of its idle baseline.
"""

from __future__ import annotations

import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.startup_1m import rss_mb  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402


def run(quick: bool) -> dict:
    size = (256 if quick else 1024) * 1024 * 1024
    jobs = {"loud": f"program: 'head -c {size} /dev/urandom | base64 -w 120'\n"}
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp), jobs, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"})
        daemon.start()
        peak = [0.0]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], rss_mb(daemon.pid))
                time.sleep(0.1)

        try:
            time.sleep(1)
            baseline = rss_mb(daemon.pid)
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            with httpx.Client(base_url=daemon.api, timeout=60) as api:
                [run] = api.post("/runs", json={"job_id": "loud"}).json()["runs"]
                deadline = time.monotonic() + 1800
                while api.get(f"/runs/{run['run_id']}").json()["state"] not in ("success", "failure", "error"):
                    if time.monotonic() > deadline:
                        raise RuntimeError("the big-output run did not finish")
                    time.sleep(0.5)
            stop.set()
            sampler.join()
        finally:
            daemon.cleanup()
    return {"big_output_rss_growth_mb": {"value": round(peak[0] - baseline, 1), "unit": "MB",
                                         "baseline": round(baseline, 1)}}


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

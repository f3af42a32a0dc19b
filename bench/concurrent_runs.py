"""concurrent_rss_mb_1k: memory of 1 000 runs running at once (daemon + agent).

    .venv/bin/python -m bench.concurrent_runs [--quick]

Issue 3 asks that thousands of concurrent runs not need gigabytes. A daemon starts
N runs of `sleep` at once; when all are running, the RSS of the daemon and of its
agent is measured, against the same two processes with one run going (the baseline,
same run). The programs themselves (`sleep`) are the OS's cost, not Apsis's, and are
not counted. Everything is killed at the end. --quick runs 300, not 1 000.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.conftest import Daemon  # noqa: E402

JOBS = {"sleeper": "program: {type: shell, command: 'exec sleep 120'}\n"}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def agent_pid(daemon: Daemon) -> int:
    return int((Path(str(daemon.db) + ".agent") / "server.lock").read_text().strip())


def wait_running(api: httpx.Client, count: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        page = api.get("/runs", params={"job_id": "sleeper", "state": "running",
                                        "limit": 10000}).json()
        if len(page["runs"]) >= count:
            return
        time.sleep(0.5)
    raise RuntimeError(f"{count} runs were not all running within {timeout}s")


def measure(count: int) -> tuple[float, float]:
    """(RSS MB of daemon + agent with `count` runs going, the same with one run)."""
    with tempfile.TemporaryDirectory(prefix="apsis-bench-") as tmp:
        daemon = Daemon(Path(tmp), JOBS)
        try:
            daemon.start()
            with httpx.Client(base_url=daemon.api, timeout=120) as api:
                api.post("/runs", json={"job_id": "sleeper"}).raise_for_status()
                wait_running(api, 1)
                time.sleep(1.0)  # let both settle
                pids = [daemon.proc.pid, agent_pid(daemon)]
                one = sum(rss_mb(p) for p in pids)
                api.post("/runs", json={"job_id": "sleeper", "count": count - 1}).raise_for_status()
                wait_running(api, count)
                time.sleep(1.0)
                many = sum(rss_mb(p) for p in pids)
        finally:
            daemon.cleanup()  # kills the agent and every sleep it started
    return many, one


def run(quick: bool) -> dict:
    many, one = measure(300 if quick else 1000)
    return {"concurrent_rss_mb_1k": {"value": round(many, 1), "unit": "MB",
                                     "baseline": round(one, 1)}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))

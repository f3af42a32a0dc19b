"""runs_per_s_shell_true, start_p99_ms_burst50, start_p99_ms_spaced: the daemon end to end.

The baseline for throughput is raw asyncio spawning `/bin/sh -c true` on the same
machine in the same run, with the same concurrency bound, so the ratio says what
the daemon costs on top of process creation.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

import httpx

from apsis.lib.timefmt import format_time, parse_time
from apsis.model.states import State

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.integration.conftest import Daemon  # noqa: E402  (the same daemon the tests start)

LIVE_STATES = [s.value for s in State if not s.finished]
JOBS = {"true": "program: 'true'\n", "noop": "program: {type: no-op}\n"}


async def raw_spawn_rate(n: int, concurrency: int = 64) -> float:
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            proc = await asyncio.create_subprocess_exec("/bin/sh", "-c", "true")
            await proc.wait()

    start = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return n / (time.perf_counter() - start)


def wait_finished(api: httpx.Client, job_id: str, n: int, timeout: float = 600) -> dt.datetime:
    """Until `n` runs of the job have finished; the latest time one of them finished, as
    the daemon recorded it. It polls for one run not finished yet, so the polling costs
    the daemon next to nothing (a page of 2 000 runs five times a second took a quarter of
    its CPU), and counts the finished once, when none is left. The end is read from the
    runs, not from the poll: a 0.2 s poll would add ~0.1 s (~4 %) to a 2.5 s burst."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        live = api.get("/runs", params={"job_id": job_id, "state": LIVE_STATES, "limit": 1}).json()
        if not live["runs"]:
            page = api.get("/runs", params={"job_id": job_id, "state": ["success", "failure", "error"],
                                            "limit": n, "summary": "true"}).json()
            if len(page["runs"]) >= n:
                return max(parse_time(run["times"][run["state"]]) for run in page["runs"])
        time.sleep(0.2)
    raise RuntimeError(f"{job_id}: runs did not finish in {timeout}s")


def burst_rate(api: httpx.Client, job_id: str, n: int) -> float:
    """Runs per second of a burst of `n` runs of the job in one request: from the request
    to the last run's end as the daemon stamped it (same machine, same clock)."""
    start = dt.datetime.now(dt.UTC)
    api.post("/runs", json={"job_id": job_id, "count": n}).raise_for_status()
    return n / (wait_finished(api, job_id, n) - start).total_seconds()


def start_lags(api: httpx.Client, run_ids: list[str]) -> list[float]:
    lags = []
    for run_id in run_ids:
        run = api.get(f"/runs/{run_id}").json()
        lags.append((parse_time(run["times"]["running"]) - parse_time(run["times"]["schedule"])).total_seconds())
    return lags


def p99(values: list[float]) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(0.99 * (len(values) - 1))))]


def run(quick: bool) -> dict:
    n = 500 if quick else 2000
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp), JOBS, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"})
        daemon.start()
        try:
            with httpx.Client(base_url=daemon.api, timeout=120) as api:
                rate = burst_rate(api, "true", n)
                baseline = asyncio.run(raw_spawn_rate(n))

                at = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(seconds=3)
                burst = api.post("/runs", json={"job_id": "noop", "count": 50,
                                                "times": {"schedule": format_time(at)}}).json()["runs"]
                time.sleep(max(0.0, (at - dt.datetime.now(dt.UTC)).total_seconds()) + 2)
                burst_lags = start_lags(api, [r["run_id"] for r in burst])

                at = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
                spaced = [api.post("/runs", json={"job_id": "noop", "times": {
                    "schedule": format_time(at + dt.timedelta(seconds=0.5 * i))}}).json()["runs"][0]
                    for i in range(20)]
                time.sleep(2 + 0.5 * 20 + 2)
                spaced_lags = start_lags(api, [r["run_id"] for r in spaced])
        finally:
            daemon.cleanup()
    return {
        "runs_per_s_shell_true": {"value": round(rate, 1), "unit": "runs/s", "baseline": round(baseline, 1)},
        "start_p99_ms_burst50": {"value": round(p99(burst_lags) * 1000, 1), "unit": "ms", "baseline": None},
        "start_p99_ms_spaced": {"value": round(p99(spaced_lags) * 1000, 1), "unit": "ms", "baseline": None},
    }


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

"""failover_s: `kill -9` of the leader under load → the new leader's first started run.

    .venv/bin/python -m bench.failover [--quick]

Two daemons on one PostgreSQL database (a private, fsync'd server from tests/pg.py),
`ha.takeover: 3s`; the leader has runs of `sleep 2` in flight (100 quick, 200 full) and
a schedule due every second. The figure is the time from the kill to the `starting`
time of the first run the new leader starts (a tick missed during the gap, caught
up), as the SPEC defines it (§1.13); it includes the standby's wait for the lock, its
restore of the unfinished runs and its catch-up. Goal (issue 15): at most 5 s. The
median of three kills, each on a fresh database.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apsis.lib.timefmt import parse_time  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402
from tests.pg import PgServer, find_bin_dir  # noqa: E402

TAKEOVER = 3.0
JOBS = {
    "nap": "program: 'sleep 2'\n",
    "tick": "schedule: {type: interval, interval: 1s}\nprogram: {type: no-op}\n",
}


def _pair(root: Path, url: str) -> tuple[Daemon, Daemon]:
    daemons = []
    for name in ("a", "b"):
        daemon = Daemon(root / name, JOBS, database=url)
        daemon.config_path = daemon.root / "apsis.yaml"
        daemon.config_path.write_text(f"ha:\n  node: {name}\n  takeover: {TAKEOVER:g}s\n")
        daemons.append(daemon.start(timeout=60))
    return daemons[0], daemons[1]


def one_failover(root: Path, url: str, in_flight: int) -> float:
    leader, standby = _pair(root, url)
    try:
        with httpx.Client(base_url=leader.api, timeout=60) as api:
            api.post("/runs", json={"job_id": "nap", "count": in_flight}).raise_for_status()
            deadline = time.monotonic() + 60
            while len(api.get("/runs", params={"job_id": "nap", "state": "running",
                                               "limit": in_flight}).json()["runs"]) < in_flight // 2:
                if time.monotonic() > deadline:
                    raise RuntimeError("the runs did not start")
                time.sleep(0.05)
        leader.kill()  # returns once it is dead: a run starting after this is the new leader's
        killed = dt.datetime.now(dt.UTC)
        with httpx.Client(base_url=standby.api, timeout=60) as api:
            deadline = time.monotonic() + 30
            while True:
                runs = api.get("/runs", params={"state": ["starting", "running", "success"],
                                                "job_id": "tick", "limit": 1000}).json()["runs"]
                started = [parse_time(r["times"]["starting"]) for r in runs
                           if "starting" in r["times"]]
                after = [t for t in started if t > killed]
                if after:
                    return (min(after) - killed).total_seconds()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no run started after the kill:\n{standby.log_text()[-3000:]}")
                time.sleep(0.05)
    finally:
        leader.cleanup()
        standby.cleanup()


def run(quick: bool) -> dict:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    in_flight = 100 if quick else 200
    server = PgServer(bin_dir, durable=True)
    server.start()
    try:
        times = []
        for i in range(3):
            with tempfile.TemporaryDirectory(prefix="apsis-bench-") as tmp:
                times.append(one_failover(Path(tmp), server.url(server.create_database()),
                                          in_flight))
            print(f"failover {i + 1}: {times[-1]:.2f}s", file=sys.stderr)
    finally:
        server.stop()
    return {"failover_s": {"value": round(statistics.median(times), 2), "unit": "s",
                           "baseline": None}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))

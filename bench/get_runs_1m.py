"""GET /runs through the daemon on a database of a million finished runs.

    .venv/bin/python -m bench.get_runs_1m [--quick]

Each query shape the CLI and the TUI use (a job, a folder of 50 jobs, a state, an arg, a
label, the tenth page by cursor, no filter) is timed end to end over HTTP; the baseline is GET /alive
on the same daemon, the cost of a request that does not touch the runs table.
(`get_runs_job_p50_ms_1m` itself is measured by bench/startup_1m.py; these are the
other shapes, named after it.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.store_1m import JOBS as JOB_COUNT
from bench.store_1m import build_db
from tests.integration.conftest import Daemon

JOBS = {"group0/job0": "program: {type: no-op}\n"}


def _p50_ms(call: Callable[[int], Any], n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def measure(runs: int, queries: int) -> dict[str, float]:
    import httpx

    with tempfile.TemporaryDirectory(prefix="apsis-bench-") as tmp:
        root = Path(tmp)
        build_db(str(root / "apsis.db"), runs)
        daemon = Daemon(root, JOBS, args=["--since", "now"])
        try:
            daemon.start(timeout=120)
            with httpx.Client(base_url=daemon.api, timeout=60) as api:

                def get(params: dict[str, Any]) -> dict[str, Any]:
                    response = api.get("/runs", params=params)
                    response.raise_for_status()
                    return response.json()

                def job(i: int) -> str:
                    return f"group{(i % JOB_COUNT) // 50}/job{i % JOB_COUNT}"

                def folder(i: int) -> list[str]:  # `apsis runs groupN/`: its 50 jobs
                    first = i % (JOB_COUNT // 50) * 50
                    return [f"group{first // 50}/job{n}" for n in range(first, first + 50)]

                cursors = []
                page = get({"limit": 100})
                for _ in range(9):
                    cursors.append(page["cursor"])
                    page = get({"limit": 100, "cursor": page["cursor"]})
                return {
                    "alive": _p50_ms(lambda i: api.get("/alive").raise_for_status(), queries),
                    "all": _p50_ms(lambda i: get({"limit": 100}), queries),
                    "job": _p50_ms(lambda i: get({"job_id": job(i), "limit": 100}), queries),
                    "folder": _p50_ms(lambda i: get({"job_id": folder(i), "limit": 100}), queries),
                    "state": _p50_ms(lambda i: get({"state": "failure", "limit": 100}), queries),
                    "arg": _p50_ms(lambda i: get({"arg.date": f"2020-0{1 + i % 9}-1{i % 10}",
                                                  "limit": 100}), queries),
                    "label": _p50_ms(lambda i: get({"label": f"team{i % 7}", "limit": 100}), queries),
                    "page10": _p50_ms(lambda i: get({"limit": 100, "cursor": cursors[-1]}), queries),
                }
        finally:
            daemon.cleanup()


def run(quick: bool) -> dict:
    found = measure(200_000 if quick else 1_000_000, 20 if quick else 50)
    base = round(found["alive"], 3)
    return {f"get_runs_{shape}_p50_ms_1m": {"value": round(found[shape], 3), "unit": "ms",
                                            "baseline": base}
            for shape in ("all", "folder", "state", "arg", "label", "page10")}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))

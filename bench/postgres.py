"""The daemon on PostgreSQL, against the same measures on SQLite in the same run.

    .venv/bin/python -m bench.postgres [--quick]

runs_per_s_shell_true_pg: `true` runs through a daemon whose database is PostgreSQL
(a private server from tests/pg.py, with fsync'd commits like SQLite's FULL); the
baseline is the same figure on a SQLite file. Goal (issue 15): at least 0.7 of it.
get_runs_job_p50_ms_1m_pg: GET /runs?job_id=... on a million finished runs (built as
bench/store_1m.py builds them, then moved with `apsisctl db copy`); the baseline is
the same query on the SQLite file it was copied from.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.daemon_runs import burst_rate  # noqa: E402
from bench.store_1m import JOBS as JOB_COUNT  # noqa: E402
from bench.store_1m import build_db  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402
from tests.pg import PgServer, find_bin_dir  # noqa: E402

JOBS = {"true": "program: 'true'\n", "group0/job0": "program: {type: no-op}\n"}


def runs_per_s(root: Path, n: int, database: str | None) -> float:
    daemon = Daemon(root, JOBS, database=database, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"})
    daemon.start(timeout=60)
    try:
        with httpx.Client(base_url=daemon.api, timeout=120) as api:
            return burst_rate(api, "true", n)
    finally:
        daemon.cleanup()


def job_query_p50_ms(root: Path, database: str | None, queries: int) -> float:
    daemon = Daemon(root, JOBS, database=database, args=["--since", "now"])
    daemon.start(timeout=300)
    try:
        with httpx.Client(base_url=daemon.api, timeout=60) as api:
            times = []
            for i in range(queries):
                job = f"group{(i % JOB_COUNT) // 50}/job{i % JOB_COUNT}"
                t0 = time.perf_counter()
                api.get("/runs", params={"job_id": job, "limit": 100}).raise_for_status()
                times.append((time.perf_counter() - t0) * 1000)
            return statistics.median(times)
    finally:
        daemon.cleanup()


def copy_into(source: str, url: str) -> None:
    from apsis.store.copy import copy_database, open_rows

    async def main() -> None:
        async with open_rows(source, target=False) as src, open_rows(url, target=True) as dst:
            report = await copy_database(src, dst, chunk=2000)
        if report.mismatches:
            raise RuntimeError(f"copy differs: {report.mismatches}")

    asyncio.run(main())


def run(quick: bool) -> dict:
    bin_dir = find_bin_dir()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
    n = 500 if quick else 2000
    runs = 100_000 if quick else 1_000_000
    queries = 20 if quick else 50
    server = PgServer(bin_dir, durable=True)
    server.start()
    try:
        with tempfile.TemporaryDirectory(prefix="apsis-bench-") as tmp:
            root = Path(tmp)
            (root / "lite").mkdir()
            (root / "pg").mkdir()
            lite_rate = runs_per_s(root / "lite", n, None)
            pg_rate = runs_per_s(root / "pg", n, server.url(server.create_database()))

            (root / "lite1m").mkdir()
            (root / "pg1m").mkdir()
            db = root / "lite1m" / "apsis.db"
            build_db(str(db), runs)
            url = server.url(server.create_database())
            copy_into(str(db), url)
            lite_p50 = job_query_p50_ms(root / "lite1m", None, queries)
            pg_p50 = job_query_p50_ms(root / "pg1m", url, queries)
    finally:
        server.stop()
    return {
        "runs_per_s_shell_true_pg": {"value": round(pg_rate, 1), "unit": "runs/s",
                                     "baseline": round(lite_rate, 1)},
        "get_runs_job_p50_ms_1m_pg": {"value": round(pg_p50, 3), "unit": "ms",
                                      "baseline": round(lite_p50, 3)},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    print(json.dumps(run(parser.parse_args().quick), indent=2))

"""Builds a database of 1 000 000 finished runs and measures the store on it.

    .venv/bin/python bench/store_1m.py [--runs N] [--db PATH] [--keep]

Prints JSON: build time, open time (vs an empty database), query p50s, write rates.
`build_db` is also what the daemon benchmarks (startup_s_1m) use to make their database.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import itertools
import json
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from apsis.store import Store
from apsis.store.keys import time_key

JOBS = 500
COUNTRIES = ["US", "GB", "DE", "JP", "FR", "BR", "IN", "CN"]


def _runs(n: int, start_num: int):
    """Rows for the runs table: ~500 jobs, daily-ish runs over the last few years."""
    rng = random.Random(42)
    base = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    for i in range(n):
        num = start_num + i
        job = f"group{(i % JOBS) // 50}/job{i % JOBS}"
        when = base + dt.timedelta(seconds=i * 150)
        sched = when.isoformat()
        state = "success" if rng.random() < 0.95 else rng.choice(["failure", "error", "skipped"])
        args = {"date": when.date().isoformat(), "country": COUNTRIES[i % len(COUNTRIES)]}
        end = (when + dt.timedelta(seconds=30)).isoformat()
        run = {
            "run_id": f"r{num}",
            "job_id": job,
            "args": args,
            "state": state,
            "labels": ["daily", f"team{i % 7}"],
            "times": {
                "schedule": sched,
                "new": sched,
                "scheduled": sched,
                "starting": sched,
                "running": sched,
                state: end,
            },
            "message": None,
            "program": {"type": "shell", "command": f"load --date {args['date']}"},
            "conditions": [],
            "actions": [],
            "rerun_of": None,
            "attempt": 1,
            "exit_code": 0 if state == "success" else 1,
            "signal": None,
            "outputs": [{"output_id": "output", "length": 120}],
            "ad_hoc": False,
        }
        yield (num, job, state, time_key(when), json.dumps(run, separators=(",", ":")))


def build_db(path: str, n: int, batch: int = 50_000) -> float:
    """Creates `path` with `n` finished runs; returns the seconds it took.

    Goes around the store on purpose (plain sqlite3, no journal, indexes built at the
    end) because only the result matters here, not the daemon's write path.
    """
    t0 = time.perf_counter()

    async def create() -> None:
        store = await Store.open(path)
        await store.close()

    asyncio.run(create())
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -400000")
    # Indexes built once at the end cost far less than kept up row by row.
    indexes = conn.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL "
        "AND tbl_name IN ('runs', 'run_args', 'run_labels')"
    ).fetchall()
    for name, _ in indexes:
        conn.execute(f"DROP INDEX {name}")
    rows = _runs(n, 1)
    while chunk := list(itertools.islice(rows, batch)):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO runs (run_num, job_id, state, sort_time, run) VALUES (?, ?, ?, ?, ?)",
            chunk,
        )
        conn.execute("COMMIT")
    for _, sql in indexes:
        conn.execute(sql)
    conn.execute("UPDATE meta SET value = ? WHERE key = 'next_run_num'", (n + 1,))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.close()
    return time.perf_counter() - t0


async def _time(fn, repeat: int) -> float:
    """p50 in milliseconds."""
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


async def _open_close(path: str) -> float:
    t0 = time.perf_counter()
    store = await Store.open(path)
    await store.get_run("r1")
    elapsed = time.perf_counter() - t0
    await store.close()
    return elapsed


async def measure(path: str, empty_path: str, n: int) -> dict:
    results: dict = {}
    results["open_s_1m"] = min([await _open_close(path) for _ in range(3)])
    results["open_s_empty"] = min([await _open_close(empty_path) for _ in range(3)])
    store = await Store.open(path)
    try:
        rng = random.Random(1)

        def job() -> str:
            i = rng.randrange(JOBS)
            return f"group{i // 50}/job{i}"

        queries = {
            "query_job_p50_ms": lambda: store.query_runs(job_id=job(), limit=100),
            "query_all_p50_ms": lambda: store.query_runs(limit=100),
            "query_failure_p50_ms": lambda: store.query_runs(states=["failure"], limit=100),
            "query_running_p50_ms": lambda: store.query_runs(states=["running"], limit=100),
            "query_arg_common_p50_ms": lambda: store.query_runs(args={"country": "US"}, limit=100),
            "query_arg_rare_p50_ms": lambda: store.query_runs(
                args={"date": f"2021-06-0{rng.randrange(1, 9)}"}, limit=100
            ),
            "query_job_arg_p50_ms": lambda: store.query_runs(
                job_id=job(), args={"country": "JP"}, limit=100
            ),
            "query_label_p50_ms": lambda: store.query_runs(labels=["team3"], limit=100),
            "query_since_p50_ms": lambda: store.query_runs(
                since="2022-01-01T00:00:00Z", until="2022-02-01T00:00:00Z", limit=100
            ),
            "get_run_p50_ms": lambda: store.get_run(f"r{rng.randrange(1, n)}"),
            "count_by_state_p50_ms": lambda: store.count_runs_by_state(),
            "load_unfinished_p50_ms": lambda: store.load_unfinished_runs(),
        }
        for name, fn in queries.items():
            results[name] = round(await _time(fn, 50), 3)

        page = await store.query_runs(job_id="group3/job170", limit=100)
        t0 = time.perf_counter()
        pages = 1
        while page.cursor:
            page = await store.query_runs(job_id="group3/job170", limit=100, cursor=page.cursor)
            pages += 1
        results["paginate_job_ms_per_page"] = round((time.perf_counter() - t0) * 1000 / pages, 3)

        # Writes: the engine's path, with fsync (synchronous=FULL).
        ids = await store.allocate_run_ids(2000)
        now = dt.datetime.now(dt.UTC).isoformat()

        def transition(run_id: str, state: str) -> tuple:
            run = {
                "run_id": run_id,
                "job_id": "bench/write",
                "args": {"n": run_id},
                "state": state,
                "labels": [],
                "times": {"schedule": now, state: now},
            }
            entry = {"run_id": run_id, "ts": now, "state": state, "message": state}
            event = {"type": "run_transition", "ts": now, "run": run, "from": None, "to": state}
            return run, entry, event

        t0 = time.perf_counter()
        for rid in ids[:200]:
            run, entry, event = transition(rid, "new")
            await store.write([run], [entry], [event])
        results["write_single_per_s"] = round(200 / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        for i in range(200, 2000, 100):
            batch = [transition(rid, "new") for rid in ids[i : i + 100]]
            await store.write([b[0] for b in batch], [b[1] for b in batch], [b[2] for b in batch])
        results["write_batch100_per_s"] = round(1800 / (time.perf_counter() - t0))
    finally:
        await store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--db", help="database to build (default: a temporary file)")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    opts = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="apsis-bench-")
    path = opts.db or os.path.join(tmp, "runs.db")
    empty = os.path.join(tmp, "empty.db")
    results = {"runs": opts.runs}
    if not os.path.exists(path):
        results["build_s"] = round(build_db(path, opts.runs), 1)
    build_db(empty, 0)
    results["db_mb"] = round(os.path.getsize(path) / 1e6, 1)
    results.update(asyncio.run(measure(path, empty, opts.runs)))
    print(json.dumps(results, indent=2))
    if not opts.keep:
        for p in Path(tmp).iterdir():
            p.unlink()
        os.rmdir(tmp)


if __name__ == "__main__":
    main()

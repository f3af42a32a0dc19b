"""reload_one_ms_10k: the daemon reloading one edited job file among 10 000.

The engine runs in-process (real store, real agent) on the jobs `check_job` generates;
one file is edited and reloaded by name, as the job-file watcher does. The baseline is
a reload of the whole directory, in the same run.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.check_job import generate


async def measure(root: Path, db: Path, edits: int) -> tuple[list[float], float]:
    from apsis.config import Config
    from apsis.engine.core import Engine
    from apsis.jobs_dir import load_jobs_dir
    from apsis.store import Store

    config = Config(jobs=root, database=db)
    config.horizon = 60.0  # the reload is measured, not the scheduling of 10 000 jobs
    store = await Store.open(db)
    engine = Engine(config, store, await asyncio.to_thread(load_jobs_dir, root))
    await engine.start("now")
    try:
        edited = root / "group7" / "job7.yaml"
        text = edited.read_text()
        times = []
        for i in range(edits):
            edited.write_text(text.replace("timeout: 1h", f"timeout: {i + 2}h"))
            start = time.perf_counter()
            result = await engine.reload_jobs(paths=[edited])
            times.append(time.perf_counter() - start)
            assert result["changed"] == ["group7/job7"], result
        start = time.perf_counter()
        await engine.reload_jobs()
        full = time.perf_counter() - start
        return times, full
    finally:
        await engine.stop()
        await store.close()


def run(quick: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jobs"
        root.mkdir()
        generate(root, 10_000)
        times, full = asyncio.run(measure(root, Path(tmp) / "apsis.db", 3 if quick else 7))
    return {"reload_one_ms_10k": {"value": round(statistics.median(times) * 1000, 1), "unit": "ms",
                                  "baseline": round(full * 1000, 1)}}


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

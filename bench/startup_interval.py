"""startup_s_interval2s, rss_mb_interval2s: first start of a daemon with one `interval: 2s` job.

With the default one-day horizon such a job once meant 43 200 scheduled runs at start
(22 s, 1 GB); `schedule.max_ahead` bounds it. The baseline is the first start of the
same daemon with no jobs, measured in the same run.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.startup_1m import rss_mb  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402

INTERVAL_JOB = {"every2s": "program: [\"true\"]\nschedule: {type: interval, interval: 2s}\n"}


def first_start(jobs: dict[str, str]) -> tuple[float, float]:
    """(seconds to /alive, RSS in MB then) of a daemon started on a fresh database."""
    with tempfile.TemporaryDirectory() as root:
        daemon = Daemon(Path(root), jobs, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"})
        try:
            t0 = time.perf_counter()
            daemon.start()
            seconds = time.perf_counter() - t0
            assert daemon.pid is not None
            return seconds, rss_mb(daemon.pid)
        finally:
            daemon.cleanup()


def run(quick: bool) -> dict:
    rounds = 2 if quick else 5
    empty = [first_start({}) for _ in range(rounds)]
    interval = [first_start(INTERVAL_JOB) for _ in range(rounds)]
    return {
        "startup_s_interval2s": {"value": round(statistics.median(s for s, _ in interval), 3),
                                 "unit": "s",
                                 "baseline": round(statistics.median(s for s, _ in empty), 3)},
        "rss_mb_interval2s": {"value": round(statistics.median(m for _, m in interval), 1),
                              "unit": "MB",
                              "baseline": round(statistics.median(m for _, m in empty), 1)},
    }


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

"""jobs_10k_rss_mb, jobs_10k_idle_cpu_pct: a daemon holding 10 000 jobs, 100 000 runs a day.

Each generated job fires ten times a day (a cron of ten hours), at hours chosen so that
none is due in the two hours after the bench starts: what is measured is the daemon
idle between due times, holding a day (the default horizon) of 100 000 scheduled runs.

`jobs_10k_rss_mb` is the daemon's RSS once its first start (on a new database) has
settled, its CPU quiet; `jobs_10k_restart_rss_mb` the same after a restart, which
restores the day's runs from the database instead of planning them;
`jobs_10k_idle_cpu_pct` is its CPU time over IDLE_SECONDS of wall time, in percent of
one core. The baselines are the same daemon with an empty jobs directory, same run.
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.startup_1m import rss_mb  # noqa: E402
from tests.integration.conftest import Daemon  # noqa: E402

N_JOBS = 10_000
RUNS_PER_DAY = 10  # per job
IDLE_SECONDS = 20.0
SETTLE_TIMEOUT = 300.0

JOB = """\
params: [region]
metadata: {{labels: [gen, group{group}]}}
schedule:
  - {{type: cron, expr: "{minute} {hours} * * *", tz: UTC, args: {{region: us}}}}
program:
  type: shell
  command: "process --region {{{{ region|shquote }}}}"
  timeout: 1h
condition:
  type: dependency
  job_id: {dep}
  args: {{region: us}}
action: {{type: retry, count: 2, delay: 1m}}
"""


def generate(root: Path, n: int, now: dt.datetime) -> None:
    """`n` jobs of RUNS_PER_DAY runs a day, none due before now + 2 h."""
    hours = ",".join(str((now.hour + 2 + 2 * k) % 24) for k in range(RUNS_PER_DAY))
    for i in range(n):
        folder = root / f"group{i % 50}"
        folder.mkdir(exist_ok=True)
        dep = f"group{(i - 1) % 50}/job{i - 1}" if i else "group0/job0"
        (folder / f"job{i}.yaml").write_text(
            JOB.format(group=i % 50, minute=i % 60, hours=hours, dep=dep))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of `pid` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(pid: int) -> None:
    """Waits until the daemon's CPU stays under 10 % for two seconds: start-up is over."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    quiet = 0
    while quiet < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not settle")
        before = cpu_seconds(pid)
        time.sleep(1.0)
        quiet = quiet + 1 if cpu_seconds(pid) - before < 0.1 else 0


def measure(root: Path, n: int, repeat: int) -> tuple[float, float, float]:
    """(RSS in MB once settled, idle CPU in %, RSS after a restart), medians over
    `repeat` daemons, each on a new database: a first start, which plans the day's
    runs, then a restart, which restores them."""
    rss, cpu, restart_rss = [], [], []
    for i in range(repeat):
        daemon = Daemon(root / str(i), {}, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"},
                        args=["--since", "now"])
        generate(daemon.jobs_dir, n, dt.datetime.now(dt.UTC))
        try:
            daemon.start(timeout=SETTLE_TIMEOUT)
            settle(daemon.pid)
            rss.append(rss_mb(daemon.pid))
            before, t0 = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(IDLE_SECONDS)
            cpu.append(100 * (cpu_seconds(daemon.pid) - before) / (time.monotonic() - t0))
            daemon.restart(kill=False, timeout=SETTLE_TIMEOUT)
            settle(daemon.pid)
            restart_rss.append(rss_mb(daemon.pid))
        finally:
            daemon.cleanup()
    return statistics.median(rss), statistics.median(cpu), statistics.median(restart_rss)


def run(quick: bool) -> dict:
    repeat = 1 if quick else 3
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as full:
        empty_rss, empty_cpu, empty_restart = measure(Path(empty), 0, repeat)
        full_rss, full_cpu, full_restart = measure(Path(full), N_JOBS, repeat)
    return {
        "jobs_10k_rss_mb": {"value": round(full_rss, 1), "unit": "MB", "baseline": round(empty_rss, 1)},
        "jobs_10k_restart_rss_mb": {"value": round(full_restart, 1), "unit": "MB",
                                    "baseline": round(empty_restart, 1)},
        "jobs_10k_idle_cpu_pct": {"value": round(full_cpu, 2), "unit": "%", "baseline": round(empty_cpu, 2)},
    }


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

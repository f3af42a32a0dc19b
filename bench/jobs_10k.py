"""jobs_10k_rss_mb, jobs_10k_idle_cpu_pct: a daemon holding 10 000 jobs, 100 000 runs a day.

Each generated job fires ten times a day (a cron of ten hours), at hours chosen so that
none is due in the two hours after the bench starts: what is measured is the daemon
idle between due times, holding a day (the default horizon) of 100 000 scheduled runs.

`jobs_10k_rss_mb` is the daemon's RSS once its first start (on a new database) has
settled, its CPU quiet; `jobs_10k_restart_rss_mb` the same after a restart, which
restores the day's runs from the database instead of planning them;
`jobs_10k_idle_cpu_pct` is its CPU time over IDLE_SECONDS of wall time, in percent of
one core.  `jobs_10k_alive_s` is the time from the first start's launch to `/alive`,
`jobs_10k_start_s` to settled (the day's runs all created; a first start serves while
it creates them), `jobs_10k_restart_s` the same for the restart (from its launch, the
stop before it not counted).  Settled is known to within a second (`settle`).  The
baselines are the same daemon with an empty jobs directory, same run.
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


def settle(pid: int) -> float:
    """Waits until the daemon's CPU stays under 10 % for two seconds: start-up is over.
    Returns when the quiet began (time.monotonic())."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    quiet, since = 0, time.monotonic()
    while quiet < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("the daemon did not settle")
        before, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(1.0)
        if cpu_seconds(pid) - before < 0.1:
            since = t0 if quiet == 0 else since
            quiet += 1
        else:
            quiet = 0
    return since


def measure(root: Path, n: int, repeat: int) -> dict[str, float]:
    """Medians over `repeat` daemons, each on a new database, of: RSS in MB once
    settled, idle CPU in %, RSS after a restart, seconds to alive and to settled of the
    first start (which plans the day's runs) and of the restart (which restores them)."""
    got: dict[str, list[float]] = {k: [] for k in ("rss", "cpu", "restart_rss", "alive",
                                                   "start", "restart")}
    for i in range(repeat):
        daemon = Daemon(root / str(i), {}, env={"APSIS_AGENT_IDLE_TIMEOUT": "5"},
                        args=["--since", "now"])
        generate(daemon.jobs_dir, n, dt.datetime.now(dt.UTC))
        try:
            t0 = time.monotonic()
            daemon.start(timeout=SETTLE_TIMEOUT)
            got["alive"].append(time.monotonic() - t0)
            got["start"].append(settle(daemon.pid) - t0)
            got["rss"].append(rss_mb(daemon.pid))
            before, t0 = cpu_seconds(daemon.pid), time.monotonic()
            time.sleep(IDLE_SECONDS)
            got["cpu"].append(100 * (cpu_seconds(daemon.pid) - before) / (time.monotonic() - t0))
            daemon.stop()
            t0 = time.monotonic()
            daemon.start(timeout=SETTLE_TIMEOUT)
            got["restart"].append(settle(daemon.pid) - t0)
            got["restart_rss"].append(rss_mb(daemon.pid))
        finally:
            daemon.cleanup()
    return {k: statistics.median(v) for k, v in got.items()}


def run(quick: bool) -> dict:
    repeat = 1 if quick else 3
    with tempfile.TemporaryDirectory() as empty, tempfile.TemporaryDirectory() as full:
        base = measure(Path(empty), 0, repeat)
        new = measure(Path(full), N_JOBS, repeat)

    def metric(key: str, unit: str, digits: int = 1) -> dict:
        return {"value": round(new[key], digits), "unit": unit, "baseline": round(base[key], digits)}

    return {
        "jobs_10k_rss_mb": metric("rss", "MB"),
        "jobs_10k_restart_rss_mb": metric("restart_rss", "MB"),
        "jobs_10k_idle_cpu_pct": metric("cpu", "%", 2),
        "jobs_10k_alive_s": metric("alive", "s"),
        "jobs_10k_start_s": metric("start", "s"),
        "jobs_10k_restart_s": metric("restart", "s"),
    }


if __name__ == "__main__":
    print(run("--quick" in sys.argv), file=sys.stderr)

"""check_job_s_10k: `apsisctl check-job` on 10 000 generated jobs."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """\
calendars:
  bank: {weekdays: Mon-Fri, holidays: "holidays:US"}
expand:
  region:
    us: {tz: America/New_York, calendar: "market:NYSE"}
    eu: {tz: Europe/London, calendar: "holidays:GB:ENG"}
"""

JOB = """\
params: [date, region]
metadata: {{labels: [gen, group{group}]}}
schedule:
  - {{type: daily, tz: America/New_York, calendar: bank, daytime: "{hour:02d}:{minute:02d}", args: {{region: us}}}}
  - {{type: cron, expr: "{minute} */4 * * Mon-Fri", tz: Europe/London, args: {{region: eu}}}}
program:
  type: shell
  command: "process --date {{{{ date|shquote }}}} --region {{{{ region|shquote }}}} --tz {{{{ tz }}}}"
  timeout: 1h
condition:
  type: dependency
  job_id: {dep}
  args: {{date: "{{{{ calendar.shift(date, -1) }}}}"}}
action: {{type: retry, count: 2, delay: 1m}}
"""


def generate(root: Path, n: int) -> None:
    (root / ".apsis-jobs.yaml").write_text(CONFIG)
    for i in range(n):
        folder = root / f"group{i % 50}"
        folder.mkdir(exist_ok=True)
        dep = f"group{(i - 1) % 50}/job{i - 1}" if i else "group0/job0"
        (folder / f"job{i}.yaml").write_text(
            JOB.format(group=i % 50, hour=i % 24, minute=i % 60, dep=dep))


def run(quick: bool) -> dict:
    n = 10_000
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "jobs"
        root.mkdir()
        generate(root, n)
        times = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            result = subprocess.run([sys.executable, "-m", "apsis_cli.apsisctl", "check-job", str(root), "-q"],
                                    capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            if result.returncode != 0:
                raise RuntimeError(f"check-job failed on generated jobs:\n{result.stdout[:2000]}{result.stderr[:2000]}")
    return {"check_job_s_10k": {"value": round(statistics.median(times), 3), "unit": "s", "baseline": None}}


if __name__ == "__main__":
    print(run("--quick" in sys.argv))

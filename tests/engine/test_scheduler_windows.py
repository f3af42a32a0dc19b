"""The scheduler's windows, tick after tick, plan every run once: no more, no fewer.

A schedule with nothing due before a window's end is skipped without being expanded
(10 000 quiet jobs cost a tick ~30 ms, not seconds); this checks that skipping never
loses or doubles a run, against the schedules' own expansion.
"""

from __future__ import annotations

import datetime as dt
import textwrap

from apsis.engine.scheduler import Scheduler
from apsis.jobs_dir import load_jobs_dir
from apsis.schedule.runs import job_runs

JOBS = {
    "daily": "schedule: {type: daily, tz: America/New_York, daytime: '09:30'}\nprogram: 'true'\n",
    "often": "schedule: {type: interval, interval: 7m}\nprogram: 'true'\n",
    "weekly": ("schedule: {type: cron, expr: '15 6 * * Mon', tz: Europe/London}\n"
               "program: 'true'\n"),
}


def test_successive_windows_plan_each_run_once(tmp_path):
    for name, text in JOBS.items():
        (tmp_path / f"{name}.yaml").write_text(textwrap.dedent(text))
    jobs = load_jobs_dir(tmp_path).jobs
    start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)  # across the US DST change
    scheduler = Scheduler(lambda: jobs, horizon=3 * 3600, max_age=None, max_ahead=1000)
    scheduler.begin("now", None, start)
    planned = []
    now = start
    for _ in range(24 * 14):  # two weeks of hourly ticks
        window = scheduler.next_window(now)
        if window is not None:
            planned.extend((p.run.job.job_id, p.run.time) for p in window.runs)
            scheduler.advanced(window)
        now += dt.timedelta(hours=1)
    end = scheduler.clock
    expected = sorted((r.job.job_id, r.time) for job in jobs.values()
                      for r in job_runs(job, start, end))
    assert sorted(planned) == expected
    assert len(planned) == len(set(planned))
    assert {job for job, _ in planned} == set(JOBS)

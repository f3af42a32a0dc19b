"""The scheduler's windows, tick after tick, plan every run once: no more, no fewer.

A schedule with nothing due before a window's end is skipped without being expanded
(10 000 quiet jobs cost a tick ~30 ms, not seconds); this checks that skipping never
loses or doubles a run, against the schedules' own expansion.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
import shutil
import tempfile
import textwrap
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from apsis.engine.scheduler import Scheduler
from apsis.jobs_dir import load_jobs_dir
from apsis.lib.timefmt import format_time
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


# Beside JOBS: a schedule of more runs a day than max_ahead (held back, walked to count),
# and one far from UTC.
MORE_JOBS = {
    **JOBS,
    "busy": ("schedule: {type: cron, expr: '*/10 * * * *', tz: America/New_York}\n"
             "program: 'true'\n"),
    "far": ("schedule: {type: daily, tz: Pacific/Kiritimati, daytime: ['00:30', '23:45']}\n"
            "program: 'true'\n"),
}


@functools.cache
def _more_jobs() -> dict:
    root = Path(tempfile.mkdtemp(prefix="apsis-windows-"))
    for name, text in MORE_JOBS.items():
        (root / f"{name}.yaml").write_text(text)
    jobs = load_jobs_dir(root).jobs
    shutil.rmtree(root)
    return jobs


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 14 * 24 * 60), st.sampled_from([3, 10, 100, 1000]),
       st.lists(st.integers(1, 240), min_size=2, max_size=30), st.integers(1, 29))
# A restart early on, then the window over the US spring-forward gap (found by CI).
@example(minute=7021, max_ahead=100, ticks=[240] * 13 + [1], restart_at=1)
def test_windows_across_a_restart_plan_each_run_once(minute, max_ahead, ticks, restart_at):
    """Ticks of any spacing, with a restart (the stored clocks read back) anywhere among
    them: each schedule's runs planned are exactly its runs up to its clock, and never
    more than max_ahead of them ahead of now."""
    jobs = _more_jobs()
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC) + dt.timedelta(minutes=minute)

    def scheduler() -> Scheduler:
        return Scheduler(lambda: jobs, horizon=6 * 3600, max_age=None, max_ahead=max_ahead)

    sched = scheduler()
    sched.begin("now", None, start)
    planned: list[tuple[str, dt.datetime]] = []
    now = start
    for i, gap in enumerate(ticks):
        if i == restart_at:
            clock, stored = sched.clock, {k: format_time(v) for k, v in sched.behind.items()}
            sched = scheduler()
            sched.begin("clock", format_time(clock), now, stored)
        window = sched.next_window(now)
        if window is not None:
            planned.extend((p.run.schedule_key, p.run.time) for p in window.runs)
            sched.advanced(window)
        ahead = Counter(key for key, time in planned if time >= now)
        assert max(ahead.values(), default=0) <= max_ahead
        now += dt.timedelta(minutes=gap)
    # Not a set: on the US spring-forward day `*/10` has seven runs at 03:00 EDT (02:00
    # to 02:50 run at the gap's end, and 03:00 itself), one per daytime, as the DST rule says.
    expected = Counter((r.schedule_key, r.time) for job in jobs.values()
                       for r in job_runs(job, start, sched.clock)
                       if r.time < sched.behind.get(r.schedule_key, sched.clock))
    got = Counter(planned)
    assert not got - expected, "runs planned more often than their schedule has them"
    assert not expected - got, "runs of the schedules never planned"

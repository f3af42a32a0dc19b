"""Apsis job files with shifted schedules and Apsis's calendar names load in a real
daemon and plan the runs Apsis would (issue 12 items 4, 5, 7)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.timeout(60)

JOBS = {
    # Apsis's "daily double shift": MWF, run one day before the next calendar date.
    "double shift": """\
params: [date, time]

program:
  type: shell
  command: echo running for {{ date }}

schedule:
  type: daily
  calendar: Mon,Wed,Fri
  daytime: [9:30:00, 17:00:00]
  tz: America/New_York
  cal_shift: 1
  date_shift: -1
""",
    "overnight": """\
params: [date, sched_date, daytime]

program: echo "running at $(date)"

schedule:
  type: daily-interval
  calendar: usa-federal-businessdays
  tz: America/New_York
  start: 22:00:00
  stop:
    daytime: 02:00:00
    date_shift: 1
  interval: 3600
""",
    "never": """\
params: [date]

program: echo never

schedule:
  type: daily
  calendar: none
  daytime: 09:30:00
  tz: America/New_York
""",
}


def planned(api, job_id: str, start: str, stop: str) -> list[tuple[str, dict]]:
    response = api.get(f"/jobs/{job_id}/schedule", params={"from": start, "to": stop})
    assert response.status_code == 200, response.text
    return [(run["time"], run["args"]) for run in response.json()["runs"]]


def test_a_double_shifted_daily_job_gets_its_own_date_and_time(api):
    runs = planned(api, "double shift", "2024-07-07T00:00:00Z", "2024-07-08T00:00:00Z")
    # Sunday 07-07: Friday 07-05 shifted to Monday, then back one day.
    assert runs == [
        ("2024-07-07T13:30:00Z", {"date": "2024-07-05", "time": "2024-07-05T13:30:00Z"}),
        ("2024-07-07T21:00:00Z", {"date": "2024-07-05", "time": "2024-07-05T21:00:00Z"}),
    ]


def test_an_overnight_interval_on_federal_business_days(api):
    # Wednesday 2026-11-25, then Thanksgiving: no interval starts on the 26th.
    runs = planned(api, "overnight", "2026-11-26T00:00:00Z", "2026-11-28T12:00:00Z")
    assert [(t, a["date"], a["sched_date"], a["daytime"]) for t, a in runs] == [
        ("2026-11-26T03:00:00Z", "2026-11-25", "2026-11-25", "22:00:00"),
        ("2026-11-26T04:00:00Z", "2026-11-25", "2026-11-25", "23:00:00"),
        ("2026-11-26T05:00:00Z", "2026-11-25", "2026-11-26", "00:00:00"),
        ("2026-11-26T06:00:00Z", "2026-11-25", "2026-11-26", "01:00:00"),
        ("2026-11-28T03:00:00Z", "2026-11-27", "2026-11-27", "22:00:00"),
        ("2026-11-28T04:00:00Z", "2026-11-27", "2026-11-27", "23:00:00"),
        ("2026-11-28T05:00:00Z", "2026-11-27", "2026-11-28", "00:00:00"),
        ("2026-11-28T06:00:00Z", "2026-11-27", "2026-11-28", "01:00:00"),
    ]


def test_a_job_on_calendar_none_never_runs(api):
    assert planned(api, "never", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z") == []

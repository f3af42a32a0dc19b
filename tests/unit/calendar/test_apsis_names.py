"""Calendar names from Apsis job files: `none`, and the aliases of ora's calendars
(issue 12 item 5)."""

import datetime as dt

import pytest

from apsis.calendar import get_calendar, parse_calendar_defs
from apsis.jobs_dir import load_jobs_dir
from apsis.parse_context import ParseContext
from apsis.schedule.runs import job_runs
from apsis.yamlload import load_yaml


def test_none_has_no_date_and_shifting_in_it_says_so():
    cal = get_calendar("none")
    assert str(cal) == "none"
    first = dt.date(2026, 1, 1)
    assert not any(cal.contains_date(first + dt.timedelta(days=i)) for i in range(400))
    with pytest.raises(ValueError, match="no date"):
        cal.shift("2026-01-01", 1)


def test_usa_federal_businessdays_is_us_federal_business_days_under_its_own_name():
    cal = get_calendar("usa-federal-businessdays")
    assert str(cal) == "usa-federal-businessdays"  # what {{ calendar }} prints, as in Apsis
    assert cal.contains("2026-11-25") and not cal.contains("2026-11-26")  # Thanksgiving
    assert not cal.contains("2026-11-28")  # a Saturday
    assert cal.shift("2026-07-02", 1) == "2026-07-06"  # Friday 3rd: Independence Day observed
    us = get_calendar("holidays:US")
    day = dt.date(2025, 1, 1)
    for _ in range(800):
        assert cal.contains_date(day) == us.contains_date(day), day
        day += dt.timedelta(days=1)


def test_a_named_calendar_may_take_an_alias_name_but_not_none():
    ctx = ParseContext()
    node = load_yaml("calendars:\n"
                     "  usa-federal-businessdays: {holidays: 'holidays:US', extra_holidays: [2026-12-24]}\n"
                     "  none: {weekdays: Mon}\n", ".apsis-jobs.yaml")
    cals = parse_calendar_defs(node["calendars"], ctx)
    assert not cals["usa-federal-businessdays"].contains("2026-12-24")
    assert "none" not in cals
    assert any("already a built-in" in str(d) for d in ctx.diags.items)


def test_apsis_job_files_with_these_calendars_load_and_schedule(tmp_path):
    (tmp_path / "never.yaml").write_text("""\
params: [date]

program: echo never

schedule:
  type: daily
  calendar: none
  daytime: 09:30:00
  tz: America/New_York
""")
    (tmp_path / "federal.yaml").write_text("""\
params: [date]

program: echo {{ date }}

schedule:
  type: daily
  calendar: usa-federal-businessdays
  daytime: 09:30:00
  tz: America/New_York
""")
    jobs = load_jobs_dir(tmp_path)
    assert not jobs.diags.errors, jobs.diags.errors
    start = dt.datetime(2026, 11, 23, tzinfo=dt.UTC)
    stop = start + dt.timedelta(days=7)
    assert list(job_runs(jobs.jobs["never"], start, stop)) == []
    dates = [r.args["date"] for r in job_runs(jobs.jobs["federal"], start, stop)]
    assert dates == ["2026-11-23", "2026-11-24", "2026-11-25", "2026-11-27"]

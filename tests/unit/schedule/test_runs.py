"""The runs of a job in a window: one expansion for the scheduler, the API and check-job."""

from __future__ import annotations

import datetime as dt
import itertools
import time

import pytest

from apsis.jobs_dir import parse_job
from apsis.model.job import Job, missing_params
from apsis.schedule.runs import TooManyRuns, job_runs, schedule_runs
from apsis.yamlload import load_yaml

from .helpers import make_ctx, utc


def job(text: str, job_id: str = "j") -> Job:
    ctx = make_ctx()
    parsed = parse_job(load_yaml(text, "j.yaml"), job_id, ctx)
    assert not ctx.diags.errors, ctx.diags.errors
    return parsed


def test_runs_of_all_enabled_schedules_merge_in_time_order_ties_in_schedule_order():
    j = job("params: [time]\nprogram: echo\nschedule:\n"
            "  - {type: interval, interval: 2h}\n"
            "  - {type: interval, interval: 1h, enabled: false}\n"
            "  - {type: interval, interval: 3h}\n")
    runs = list(job_runs(j, utc("2026-01-01T00:00:00Z"), utc("2026-01-01T07:00:00Z")))
    assert [(r.time.hour, r.schedule_index) for r in runs] == [
        (0, 0), (0, 2), (2, 0), (3, 2), (4, 0), (6, 0), (6, 2)]
    assert [r.schedule_key for r in runs[:2]] == ["j#0", "j#2"]


def test_window_is_half_open():
    j = job("params: [time]\nprogram: echo\nschedule: {type: interval, interval: 1h}\n")
    runs = list(job_runs(j, utc("2026-01-01T01:00:00Z"), utc("2026-01-01T03:00:00Z")))
    assert [r.time for r in runs] == [utc("2026-01-01T01:00:00Z"), utc("2026-01-01T02:00:00Z")]


def test_args_are_bound_to_the_params_and_missing_ones_are_named():
    j = job("params: [date, region, country]\nprogram: echo\n"
            "schedule: {type: interval, interval: 1d, args: {region: EU, colour: red}}\n")
    [run] = job_runs(j, utc("2026-01-01T00:00:00Z"), utc("2026-01-02T00:00:00Z"))
    assert run.args == {"date": "2026-01-01", "region": "EU"}
    assert missing_params(j.params, run.args) == ["country"]


def test_stop_time_and_dst_skip_reason_come_through_with_the_api_shape():
    j = job("params: [date]\nprogram: echo\nschedule:\n"
            "  start: {type: daily, tz: America/New_York, daytime: '02:30', dst_gap: skip}\n"
            "  stop: {type: duration, duration: 1h}\n")
    runs = list(job_runs(j, utc("2024-03-09T00:00:00Z"), utc("2024-03-11T00:00:00Z")))
    assert [r.to_jso() for r in runs] == [
        {"job_id": "j", "args": {"date": "2024-03-09"}, "time": "2024-03-09T07:30:00Z",
         "schedule_index": 0, "stop": "2024-03-09T08:30:00Z"},
        {"job_id": "j", "args": {"date": "2024-03-10"}, "time": "2024-03-10T07:00:00Z",
         "schedule_index": 0, "stop": "2024-03-10T08:00:00Z",
         "skip_reason": runs[1].skip_reason},
    ]
    assert "gap" in runs[1].skip_reason


def test_cap_keeps_the_first_runs_then_says_how_many_were_cut_off():
    j = job("params: [time]\nprogram: echo\nschedule: {type: interval, interval: 1m}\n")
    start, stop = utc("2026-01-01T00:00:00Z"), utc("2026-01-01T00:10:00Z")
    assert len(list(schedule_runs(j, 0, start, stop, cap=10))) == 10  # exactly the cap: fine
    got = []
    with pytest.raises(TooManyRuns) as info:
        for run in schedule_runs(j, 0, start, stop, cap=4):
            got.append(run.time.minute)
    assert got == [0, 1, 2, 3]
    assert str(info.value) == "schedule j#0 yields over 4 runs before 2026-01-01T00:10:00Z; cut off"


def test_expansion_is_lazy_over_a_huge_window():
    j = job("params: [time]\nprogram: echo\nschedule: {type: interval, interval: 1s}\n")
    began = time.monotonic()
    first = list(itertools.islice(
        job_runs(j, utc("2026-01-01T00:00:00Z"), utc("2036-01-01T00:00:00Z")), 3))
    assert len(first) == 3 and time.monotonic() - began < 1.0


def test_a_schedule_ends_at_the_end_of_the_calendar():
    # A time shift pushes the last dates past year 9999: the schedule ends there.
    j = job("params: [date]\nprogram: echo\n"
            "schedule: {type: daily, tz: UTC, daytime: '00:00', time_shift: 60d}\n")
    start = dt.datetime(9999, 10, 25, tzinfo=dt.UTC)
    runs = list(job_runs(j, start, dt.datetime.max.replace(tzinfo=dt.UTC)))
    assert runs[0].time == start and runs[0].args == {"date": "9999-08-26"}
    assert runs[-1].time == dt.datetime(9999, 12, 31, tzinfo=dt.UTC)


def test_a_job_without_schedules_has_no_runs():
    j = job("program: echo\n")
    assert list(job_runs(j, utc("2026-01-01T00:00:00Z"), utc("2027-01-01T00:00:00Z"))) == []

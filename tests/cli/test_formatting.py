"""Unit tests: elapsed as 1:02:03, states as the TUI draws them, times in tables, run rows,
exit codes of several runs."""

from __future__ import annotations

import datetime as dt

import pytest

from apsis import present
from apsis_cli import fmt
from apsis_cli.watch import default_output_id, exit_code

UTC = dt.UTC


@pytest.mark.parametrize("seconds,text", [(0, "0:00:00"), (5, "0:00:05"), (65, "0:01:05"),
                                          (3723, "1:02:03"), (3723.9, "1:02:03"),
                                          (86400 + 3723, "1d 1:02:03"), (-5, "-0:00:05"),
                                          (None, "")])
def test_elapsed(seconds, text):
    assert present.format_elapsed(seconds) == text


def test_narrow_elapsed_fits_the_tui_column_beyond_a_day():
    assert present.format_elapsed(3723, narrow=True) == "1:02:03"
    assert present.format_elapsed(86400 + 3723, narrow=True) == "1d01h"
    assert present.format_elapsed(100 * 3600, narrow=True) == "4d04h"


def test_state_text_has_the_tui_symbol_in_colour_and_the_bare_name_without():
    text = fmt.state_text("success", color=True)
    assert text.plain == "✓ success" and "green" in str(text.style)
    assert fmt.state_text("failure", color=True).plain == "✗ failure"
    assert fmt.state_text("waiting", color=False) == "waiting"
    assert fmt.state_text("bogus", color=True).plain == "? bogus"


def test_every_state_has_a_one_cell_symbol_and_an_ascii_fallback():
    from apsis.model.states import State

    assert set(present.STATE_LOOKS) == {s.value for s in State}
    for look in present.STATE_LOOKS.values():
        assert len(look.symbol) == 1 and look.ascii.isascii() and len(look.ascii) == 1


def test_times_compact_today_and_other_days_in_utc():
    now = dt.datetime(2026, 3, 4, 12, 0, tzinfo=UTC)
    assert fmt.format_time("2026-03-04T09:30:05Z", utc=True, now=now) == "09:30:05"
    assert fmt.format_time("2026-03-01T09:30:05Z", utc=True, now=now) == "2026-03-01 09:30"
    assert fmt.format_time("2026-03-01T09:30:05Z", utc=True, compact=False) == (
        "2026-03-01 09:30:05 UTC")
    assert fmt.format_time(None) == ""
    assert fmt.format_time("garbage") == ""


def test_local_time_is_the_default():
    value = dt.datetime(2026, 3, 1, 9, 30, 5, tzinfo=UTC)
    assert fmt.format_time(value, compact=False).startswith(
        value.astimezone().strftime("%Y-%m-%d %H:%M:%S"))


RUN = {
    "run_id": "r12", "job_id": "data/load prices", "args": {"date": "2026-03-01", "c": "US"},
    "state": "success",
    "times": {"schedule": "2026-03-01T09:30:00Z", "starting": "2026-03-01T09:30:01Z",
              "running": "2026-03-01T09:30:02Z", "success": "2026-03-01T10:32:05Z"},
}


def test_run_row_with_times():
    now = dt.datetime(2026, 3, 2, tzinfo=UTC)
    row = fmt.run_row(RUN, times=True, utc=True, now=now)
    assert row == ["r12", "success", "data/load prices", "date=2026-03-01 c=US",
                   "2026-03-01 09:30", "2026-03-01 09:30", "2026-03-01 10:32", "1:02:03"]
    assert fmt.run_row(RUN) == ["r12", "success", "data/load prices", "date=2026-03-01 c=US"]


def test_elapsed_of_running_and_never_started_runs():
    running = {**RUN, "state": "running", "times": {"running": "2026-03-01T09:00:00Z"}}
    assert fmt.run_elapsed(running, dt.datetime(2026, 3, 1, 9, 0, 30, tzinfo=UTC)) == 30
    assert fmt.run_elapsed({"state": "skipped", "times": {"skipped": "x"}}) is None
    # Starting counts as started; a later `mark` does not stretch a finished run.
    starting = {"state": "starting", "times": {"starting": "2026-03-01T09:00:00Z"}}
    assert fmt.run_elapsed(starting, dt.datetime(2026, 3, 1, 9, 1, tzinfo=UTC)) == 60
    marked = {**RUN, "state": "failure",
              "times": {**RUN["times"], "failure": "2026-03-02T10:00:00Z"}}
    assert fmt.format_elapsed(fmt.run_elapsed(marked)) == "1:02:03"


def test_plain_line_pads_all_but_the_last_cell():
    assert fmt.plain_line(["r1", "ok", "job"], [4, 3, 10]) == "r1    ok   job"


def test_exit_code_of_several_runs_is_the_first_failure_in_argument_order():
    assert exit_code(["r1", "r2"], {"r1": "success", "r2": "success"}) == 0
    assert exit_code(["r1", "r2", "r3"], {"r1": "success", "r2": "skipped", "r3": "failure"}) == 4
    assert exit_code(["r3", "r2"], {"r2": "skipped", "r3": "failure"}) == 1
    assert exit_code(["r1"], {"r1": "error"}) == 3


def test_default_output_id():
    assert default_output_id({"outputs": [{"output_id": "output"}]}) == "output"
    assert default_output_id({"outputs": [{"output_id": "stdout"}, {"output_id": "stderr"}]}) == "stdout"
    assert default_output_id({"program": {"outputs": "split"}, "outputs": []}) == "stdout"
    assert default_output_id({}) == "output"

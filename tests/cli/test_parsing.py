"""Unit tests: what users type (ARG=VAL, run ids, durations, times) and fuzzy job ids."""

from __future__ import annotations

import datetime as dt

import pytest

from apsis_cli.common import UserError
from apsis_cli.exitcodes import ExitStatus
from apsis_cli.fuzzy import fuzzy_candidates, job_matches_pattern
from apsis_cli.parse import (
    parse_args,
    parse_duration,
    parse_run_id,
    parse_signal,
    parse_state,
    parse_time,
)

UTC = dt.UTC
NOW = dt.datetime(2026, 3, 4, 12, 0, 0, tzinfo=UTC)


# ------------------------------------------------------------------ ARG=VAL

def test_args_basic_and_values_with_equals_and_spaces():
    assert parse_args(["date=2026-01-02", "q=a=b", "name=New York", "empty="]) == {
        "date": "2026-01-02", "q": "a=b", "name": "New York", "empty": ""}


@pytest.mark.parametrize("bad", ["noequals", "=value", "1x=2", "a b=c"])
def test_args_rejects_non_assignments(bad):
    with pytest.raises(UserError) as info:
        parse_args([bad])
    assert info.value.exit_code == ExitStatus.USAGE
    assert "NAME=VALUE" in info.value.hint


def test_args_same_name_twice_is_an_error_unless_equal():
    assert parse_args(["a=1", "a=1"]) == {"a": "1"}
    with pytest.raises(UserError, match="twice"):
        parse_args(["a=1", "a=2"])


# ------------------------------------------------------------------ run ids, states, signals

@pytest.mark.parametrize("text,expected", [("r123", "r123"), ("R7", "r7"), ("42", "r42"),
                                           (" r0099 ", "r99")])
def test_run_ids(text, expected):
    assert parse_run_id(text) == expected


@pytest.mark.parametrize("bad", ["x1", "r", "r1a", "", "run1"])
def test_bad_run_ids(bad):
    with pytest.raises(UserError, match="not a run id"):
        parse_run_id(bad)


def test_states_and_signals():
    assert parse_state("Running") == ["running"]
    assert parse_state("fail") == ["failure"]
    assert parse_state("failed") == ["error", "failure"]
    with pytest.raises(UserError, match="unknown state"):
        parse_state("done")
    assert parse_signal("term") == "SIGTERM"
    assert parse_signal("SIGHUP") == "SIGHUP"
    assert parse_signal("9") == "9"
    with pytest.raises(UserError):
        parse_signal("TE RM")


# ------------------------------------------------------------------ durations, times

@pytest.mark.parametrize("text,seconds", [("90", 90), ("30s", 30), ("10m", 600),
                                          ("10 min", 600), ("1.5h", 5400), ("2d", 172800),
                                          ("1w", 604800)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration_names_the_option():
    with pytest.raises(UserError, match="--timeout: not a duration") as info:
        parse_duration("2 fortnights", "--timeout")
    assert "90s" in info.value.hint


def test_times_relative_and_absolute():
    assert parse_time("now", now=NOW) == NOW
    assert parse_time("+2h", now=NOW) == NOW + dt.timedelta(hours=2)
    assert parse_time("-1d", now=NOW) == NOW - dt.timedelta(days=1)
    assert parse_time("2026-01-02T09:30:00Z") == dt.datetime(2026, 1, 2, 9, 30, tzinfo=UTC)
    assert parse_time("2026-01-02T09:30:00+01:00") == dt.datetime(2026, 1, 2, 8, 30, tzinfo=UTC)


def test_naive_times_are_local_unless_utc():
    naive = dt.datetime(2026, 1, 2, 9, 30)
    assert parse_time("2026-01-02T09:30", utc=True) == naive.replace(tzinfo=UTC)
    assert parse_time("2026-01-02T09:30") == naive.astimezone()
    assert parse_time("2026-01-02", utc=True) == dt.datetime(2026, 1, 2, tzinfo=UTC)


@pytest.mark.parametrize("bad", ["tomorrow", "+2 fortnights", "2026-13-01", ""])
def test_bad_times(bad):
    with pytest.raises(UserError, match="--at: not a time"):
        parse_time(bad, "--at")


# ------------------------------------------------------------------ fuzzy job ids

JOBS = ["data/load prices", "data/load volumes", "data/load", "data/clean-up",
        "reports/daily_summary", "reports/daily", "setup"]


def test_fuzzy_word_prefixes():
    assert fuzzy_candidates("dat/lo pri", JOBS) == ["data/load prices"]
    assert fuzzy_candidates("d/l v", JOBS) == ["data/load volumes"]
    assert fuzzy_candidates("dat/cl up", JOBS) == ["data/clean-up"]
    assert fuzzy_candidates("rep/da-su", JOBS) == ["reports/daily_summary"]
    assert fuzzy_candidates("DAT/LO PRI", JOBS) == ["data/load prices"]


def test_exact_match_wins():
    assert fuzzy_candidates("data/load", JOBS) == ["data/load"]
    assert fuzzy_candidates("setup", JOBS) == ["setup"]


def test_a_shorter_id_is_no_better_match_than_a_longer_one():
    # Issue 12.11: only an exact id wins; word-for-word matches are listed first.
    assert fuzzy_candidates("dat/lo", JOBS) == ["data/load", "data/load prices", "data/load volumes"]
    assert fuzzy_candidates("rep/d", JOBS) == ["reports/daily", "reports/daily_summary"]
    jobs = ["match prefix", "match prefix suffix"]
    assert fuzzy_candidates("match pre", jobs) == jobs
    assert fuzzy_candidates("match prefix", jobs) == ["match prefix"]


def test_ambiguity_lists_every_candidate():
    jobs = ["data/load prices", "data/load volumes"]
    assert fuzzy_candidates("dat/lo", jobs) == ["data/load prices", "data/load volumes"]
    assert fuzzy_candidates("d/l p", ["data/load prices", "dev/lint python"]) == [
        "data/load prices", "dev/lint python"]


def test_no_match():
    assert fuzzy_candidates("xyz", JOBS) == []
    assert fuzzy_candidates("data", JOBS) == []  # segments must line up
    assert fuzzy_candidates("dat/lo pri extra", JOBS) == []
    assert fuzzy_candidates("", JOBS) == []


def test_jobs_pattern():
    assert job_matches_pattern("data/*", "data/load prices")
    assert not job_matches_pattern("data/*", "reports/daily")
    assert job_matches_pattern("load", "data/load prices")
    assert job_matches_pattern("dat/lo", "data/load prices")
    assert not job_matches_pattern("rep", "data/load prices")

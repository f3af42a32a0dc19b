"""The catch-up policy: which missed runs start, and why the others are skipped."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from apsis.schedule.catchup import TOO_OLD, catch_up

T0 = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)


def at(*minutes: int) -> list[dt.datetime]:
    return [T0 + dt.timedelta(minutes=m) for m in minutes]


def test_all_starts_every_missed_run():
    assert catch_up(at(0, 1, 2), "all", None) == [None, None, None]


def test_latest_starts_only_the_most_recent():
    assert catch_up(at(0, 1, 2), "latest", None) == [
        "missed while the daemon was down (catchup: latest)",
        "missed while the daemon was down (catchup: latest)",
        None,
    ]


def test_latest_starts_none_of_these_when_later_runs_were_missed_too():
    # Runs created before the downtime, followed by missed runs the restart creates:
    # the most recent is among the latter.
    assert None not in catch_up(at(0, 1), "latest", None, later_missed=True)


def test_none_starts_nothing_and_says_why():
    assert catch_up(at(0, 1), "none", None) == [
        "missed while the daemon was down (catchup: none)"] * 2


def test_max_age_skips_older_runs_whatever_the_mode():
    oldest = T0 + dt.timedelta(minutes=1)
    assert catch_up(at(0, 1, 2), "all", oldest) == [TOO_OLD, None, None]
    assert catch_up(at(0, 1, 2), "latest", oldest)[0] == TOO_OLD
    # Under `latest`, a most recent run that is too old leaves nothing to start.
    assert catch_up(at(0), "latest", oldest) == [TOO_OLD]
    assert TOO_OLD == "missed while the daemon was down; older than schedule.max_age"


def test_nothing_missed_nothing_decided():
    assert catch_up([], "latest", None) == []


def test_times_must_be_oldest_first_and_the_mode_known():
    with pytest.raises(ValueError, match="oldest first"):
        catch_up(at(2, 1), "all", None)
    with pytest.raises(ValueError, match="unknown catchup mode 'latests'"):
        catch_up(at(0), "latests", None)


# --- properties ---------------------------------------------------------------------

missed_times = st.lists(st.integers(0, 10_000), max_size=30).map(lambda ms: at(*sorted(ms)))
oldest_times = st.none() | st.integers(-10, 10_010).map(lambda m: T0 + dt.timedelta(minutes=m))
modes = st.sampled_from(["all", "latest", "none"])
SETTINGS = settings(max_examples=300, deadline=None)


@SETTINGS
@given(missed_times, modes, oldest_times, st.booleans())
def test_every_missed_run_gets_a_start_or_a_reason(missed, mode, oldest, later):
    decisions = catch_up(missed, mode, oldest, later_missed=later)
    assert len(decisions) == len(missed)
    assert all(d is None or (isinstance(d, str) and d.startswith("missed while")) for d in decisions)


@SETTINGS
@given(missed_times, modes, oldest_times, st.booleans())
def test_no_run_older_than_max_age_starts(missed, mode, oldest, later):
    decisions = catch_up(missed, mode, oldest, later_missed=later)
    for time, decision in zip(missed, decisions):
        if oldest is not None and time < oldest:
            assert decision == TOO_OLD


@SETTINGS
@given(missed_times, oldest_times)
def test_all_starts_exactly_those_not_older_than_max_age(missed, oldest):
    decisions = catch_up(missed, "all", oldest)
    assert [d is None for d in decisions] == [oldest is None or t >= oldest for t in missed]


@SETTINGS
@given(missed_times, oldest_times, st.booleans())
def test_latest_starts_at_most_one_and_only_the_last(missed, oldest, later):
    decisions = catch_up(missed, "latest", oldest, later_missed=later)
    started = [i for i, d in enumerate(decisions) if d is None]
    assert len(started) <= 1
    if started:
        assert started == [len(missed) - 1] and not later
    elif missed and not later:
        assert oldest is not None and missed[-1] < oldest  # only age stops the last one


@SETTINGS
@given(missed_times, oldest_times, st.booleans())
def test_none_starts_nothing(missed, oldest, later):
    assert None not in catch_up(missed, "none", oldest, later_missed=later)

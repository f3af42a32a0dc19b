"""The catch-up policy: which runs missed while the daemon was down still start.

Per schedule, `catchup: all` starts every missed run once, `latest` only the most
recent one, `none` none; `schedule.max_age` (config) bounds how far back any of
them reaches.  A missed run that does not start is recorded as skipped with the
reason returned here, so nothing is missed silently (SPEC 1.2, "Missed runs").
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .base import CATCHUP_MODES

TOO_OLD = "missed while the daemon was down; older than schedule.max_age"


def not_caught_up(mode: str) -> str:
    """The skip reason of a missed run that its schedule's `catchup` mode leaves out."""
    return f"missed while the daemon was down (catchup: {mode})"


def catch_up(missed: Sequence[dt.datetime], mode: str, oldest: dt.datetime | None, *,
             later_missed: bool = False) -> list[str | None]:
    """For each missed time of one schedule, None to start it or the reason it is skipped.

    `missed` are the schedule times of the runs missed, oldest first; the answer is
    aligned with it.  `oldest` is the earliest time still started (now minus
    `max_age`), None for no bound.  `later_missed` says that later runs of the same
    schedule were missed too (and are decided in another call): then under `latest`
    none of these is the most recent, and none starts.
    """
    if mode not in CATCHUP_MODES:
        raise ValueError(f"unknown catchup mode {mode!r}; modes are: {', '.join(CATCHUP_MODES)}")
    if any(b < a for a, b in zip(missed, missed[1:])):
        raise ValueError("missed times must be given oldest first")
    last = len(missed) - 1
    decisions: list[str | None] = []
    for i, time in enumerate(missed):
        if oldest is not None and time < oldest:
            decisions.append(TOO_OLD)
        elif mode == "none" or (mode == "latest" and (i < last or later_missed)):
            decisions.append(not_caught_up(mode))
        else:
            decisions.append(None)
    return decisions

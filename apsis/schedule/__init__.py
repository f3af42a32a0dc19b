"""Schedules: when a job's runs are due.  One module a type, registered in `SCHEDULES`."""

from __future__ import annotations

from typing import Any

from ..errors import JobError, Location
from ..lib.strict import Fields, items_with_locs
from ..parse_context import ParseContext
from .base import COMMON_KEYS, SCHEDULES, LocalSchedule, Schedule, ScheduledRun, parse_common
from .cron import CronSchedule
from .daily import DailySchedule
from .daily_interval import DailyIntervalSchedule
from .dst import DST_FOLDS, DST_GAPS, localize, parse_tz
from .explicit import ExplicitSchedule
from .interval import IntervalSchedule
from .startstop import DaytimeStop, DurationStop, StartStopSchedule, parse_start_stop

__all__ = [
    "DST_FOLDS",
    "DST_GAPS",
    "SCHEDULES",
    "CronSchedule",
    "DailyIntervalSchedule",
    "DailySchedule",
    "DaytimeStop",
    "DurationStop",
    "ExplicitSchedule",
    "IntervalSchedule",
    "LocalSchedule",
    "Schedule",
    "ScheduledRun",
    "StartStopSchedule",
    "localize",
    "parse_schedule",
    "parse_schedules",
    "parse_tz",
]


def parse_schedule(node: Any, loc: Location | None, ctx: ParseContext) -> Schedule:
    """One schedule from its job-file mapping (a `type`d one, or the start/stop form).

    Raises `JobError` at the first bad value; unknown keys go to `ctx.diags`, with
    a hint, even when a value is bad (a misspelt key often explains a missing one).
    """
    if isinstance(node, dict) and "type" not in node and ("start" in node or "stop" in node):
        return parse_start_stop(node, ctx, loc, parse_schedule)
    f = Fields(node, "schedule", ctx.diags, loc)
    try:
        cls = SCHEDULES.get(f.require("type"))
    except ValueError as exc:
        raise JobError(str(exc), f.loc_of("type")) from None
    f.what = f"{cls.TYPE} schedule" if cls.TYPE != "?" else "schedule"
    try:
        return cls.from_fields(f, ctx, parse_common(f))
    finally:
        f.ignore(*COMMON_KEYS, *getattr(cls, "KEYS", ()))
        f.done()


def parse_schedules(value: Any, loc: Location | None, ctx: ParseContext) -> list[Schedule]:
    """One schedule or a list; each bad one is reported to `ctx.diags` and left out."""
    schedules = []
    for item, item_loc in items_with_locs(value, loc):
        with ctx.diags.collect():
            schedules.append(parse_schedule(item, item_loc, ctx))
    return schedules

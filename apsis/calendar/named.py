"""The `calendars:` section of `.apsis-jobs.yaml`: calendars built from parts.

```yaml
calendars:
  us-bank: {weekdays: Mon-Fri, holidays: "holidays:US", extra_holidays: [2027-12-24]}
  trading: {holidays: [market:NYSE, us-bank], extra_dates: [2027-12-26]}
  nyse: market:NYSE          # a plain string: another name for that calendar
```
`holidays` takes `holidays:…` and `market:…` sources and the names of other
named calendars (whose holidays, not whose weekdays, are taken).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import JobError, Location
from ..lib.strict import Fields, as_str, did_you_mean, items_with_locs, type_name
from ..lib.timefmt import parse_date
from ..yamlload import loc_of, node_loc
from .base import Calendar
from .business import BusinessCalendar
from .lookup import get_calendar, is_builtin_name
from .sources import HolidayList, holiday_list
from .weekdays import ALL_DAYS, MON_FRI, parse_weekdays

if TYPE_CHECKING:
    # Only its `diags` and `get_calendar` are read: calendars sit below the parsing context.
    from ..parse_context import ParseContext

Resolve = Callable[[str], Calendar]


def parse_calendar_defs(node: Any, ctx: ParseContext) -> dict[str, Calendar]:
    """Named calendars from the `calendars:` mapping; every problem goes to `ctx.diags`, located.

    A definition may use another one defined in the same section, in any order;
    a calendar with errors is left out (and its users report that it has errors).
    """
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise JobError(f"calendars must map names to calendar definitions, not {type_name(node)}",
                       node_loc(node))
    section_loc = node_loc(node)
    built: dict[str, Calendar] = {}
    failed: set[str] = set()
    in_progress: list[str] = []

    def resolve(name: str) -> Calendar:
        """A calendar a definition refers to: one of this section (built on demand) or a built-in."""
        if name in built:
            return built[name]
        if is_builtin_name(name):
            return get_calendar(name)
        if name in node and name not in failed:
            if name in in_progress:
                cycle = " → ".join([*in_progress[in_progress.index(name):], name])
                raise ValueError(f"calendars refer to each other in a cycle: {cycle}")
            build(name)
            if name in built:
                return built[name]
        if name in failed:
            raise ValueError(f"calendar {name!r} has errors (reported at its definition)")
        if ctx.get_calendar is not None:
            return ctx.get_calendar(name)
        try:
            return get_calendar(name)
        except ValueError:
            hint = did_you_mean(name, [str(k) for k in node])
            if not hint:
                raise
            raise ValueError(f"unknown calendar {name!r}{hint}") from None

    def build(name: Any) -> None:
        loc = loc_of(node, name, section_loc)
        key_loc = node.key_loc(name) if hasattr(node, "key_loc") else loc
        in_progress.append(name)
        try:
            with ctx.diags.collect():
                if not isinstance(name, str) or not name.strip():
                    raise JobError(f"a calendar name must be a non-empty string, not {name!r}", key_loc)
                if is_builtin_name(name):
                    raise JobError(f"calendar name {name!r} is already a built-in calendar "
                                   f"(all, none, weekday sets, holidays:…, market:…); choose another name",
                                   key_loc)
                calendar = _build_one(name, node[name], loc, ctx, resolve)
                if calendar is not None:
                    built[name] = calendar
        finally:
            in_progress.pop()
            if name not in built:
                failed.add(name)

    for name in node:
        if name not in built and name not in failed:
            build(name)
    return built


def _build_one(name: str, value: Any, loc: Location | None, ctx: ParseContext,
               resolve: Resolve) -> Calendar | None:
    """One definition, or None when it has errors (each reported where it is)."""
    if isinstance(value, str):  # an alias: `nyse: market:NYSE`
        try:
            target = resolve(value)
        except ValueError as exc:
            raise JobError(f"calendar {name!r}: {exc}", loc) from None
        return target.renamed(name) if isinstance(target, BusinessCalendar) else target

    f = Fields(value, f"calendar {name!r}", ctx.diags, loc)
    before = len(ctx.diags.errors)
    weekdays = MON_FRI
    sources: list[HolidayList] = []
    extra_holidays: set[dt.date] = set()
    with ctx.diags.collect():
        weekdays = f.get("weekdays", MON_FRI, _as_weekdays)
    with ctx.diags.collect():
        f.get("description", None, as_str)
    if f.has("holidays"):
        value_ = f.get("holidays")
        for spec, item_loc in items_with_locs(value_, f.loc_of("holidays")):
            with ctx.diags.collect():
                found_sources, found_dates = _holidays_of(spec, resolve, item_loc)
                sources.extend(s for s in found_sources if s not in sources)
                extra_holidays.update(found_dates)
    extra_holidays.update(_dates(f, "extra_holidays", ctx))
    extra_dates = _dates(f, "extra_dates", ctx)
    f.done()
    if len(ctx.diags.errors) > before:
        return None
    return BusinessCalendar(name, weekdays, tuple(sources), frozenset(extra_holidays),
                            frozenset(extra_dates))


def _as_weekdays(value: Any) -> frozenset[int]:
    text = as_str(value)
    return ALL_DAYS if text.strip().lower() == "all" else parse_weekdays(text)


def _holidays_of(spec: Any, resolve: Resolve, loc: Location | None
                 ) -> tuple[tuple[HolidayList, ...], frozenset[dt.date]]:
    """The holiday sources and dates one entry of `holidays:` stands for."""
    if not isinstance(spec, str):
        raise JobError(f"holidays: expected a source like holidays:US or market:NYSE, "
                       f"not {type_name(spec)}", loc)
    try:
        if ":" in spec:
            return (holiday_list(spec),), frozenset()
        calendar = resolve(spec)
    except ValueError as exc:
        raise JobError(f"holidays: {exc}", loc) from None
    if isinstance(calendar, BusinessCalendar) and calendar.has_holidays:
        return calendar.sources, calendar.extra_holidays
    raise JobError(f"holidays: calendar {spec!r} has no holidays to take "
                   f"(write holidays:<COUNTRY>, market:<MIC> or a named calendar with holidays)", loc)


def _dates(f: Fields, key: str, ctx: ParseContext) -> set[dt.date]:
    dates: set[dt.date] = set()
    if not f.has(key):
        return dates
    for item, item_loc in items_with_locs(f.get(key), f.loc_of(key)):
        with ctx.diags.collect():
            try:
                dates.add(parse_date(item))
            except ValueError as exc:
                raise JobError(f"{key}: {exc}", item_loc) from None
    return dates

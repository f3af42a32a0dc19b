"""Parsing what users type: ARG=VAL, run ids, times and durations of options.

Everything raises `UserError` with a hint, so a typo is one line on stderr, never a
traceback.  Only the standard library (and `apsis.lib.timefmt`, `apsis.present`) is imported here.
"""

from __future__ import annotations

import datetime as dt
import re

from apsis.lib.timefmt import parse_duration as _parse_duration
from apsis.present import STATE_GROUPS, STATES, states_named

from .common import UserError

UTC = dt.UTC


# Param names in job files are free strings; `load-date` and `x.y` must be reachable too.
_ARG_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
_RUN_ID = re.compile(r"^[rR]?([0-9]+)$")


def parse_args(items: tuple[str, ...] | list[str]) -> dict[str, str]:
    """`["date=2026-01-02", "country=US"]` → a dict; values may contain `=` and spaces."""
    args: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not _ARG_NAME.match(name):
            raise UserError(f"not an argument: {item!r}", "write args as NAME=VALUE, e.g. date=2026-01-02")
        if name in args and args[name] != value:
            raise UserError(f"argument {name} given twice", f"keep one of {name}={args[name]} and {item}")
        args[name] = value
    return args


def parse_run_id(text: str) -> str:
    """`r123`, `R123` or `123` → `r123`."""
    match = _RUN_ID.match(text.strip())
    if not match:
        raise UserError(f"not a run id: {text!r}", "run ids look like r12345")
    return f"r{int(match.group(1))}"


def parse_duration(text: str, option: str = "duration") -> float:
    """Seconds from `90`, `30s`, `10m`, `1.5h`, `2d`, `1w`."""
    try:
        return _parse_duration(text)
    except ValueError:
        raise UserError(f"{option}: not a duration: {text!r}",
                        "write seconds, or a number with s, m, h, d or w: 90s, 10m, 1.5h, 2d") from None


def parse_time(text: str, option: str = "time", *, utc: bool = False,
               now: dt.datetime | None = None) -> dt.datetime:
    """An aware datetime from what a user types for a time option.

    ISO 8601 with an offset or `Z`; `now`; `+DUR` (from now) and `-DUR` (ago); a time
    without an offset, or a bare date (its midnight), is in the local zone, as the
    tables show times, unless `utc` (--utc) says otherwise.
    """
    text = text.strip()
    current = now or dt.datetime.now(UTC)
    if text.lower() == "now":
        return current
    if text[:1] in ("+", "-") and len(text) > 1:
        sign = 1 if text[0] == "+" else -1
        try:
            return current + sign * dt.timedelta(seconds=_parse_duration(text[1:]))
        except ValueError:
            pass
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UserError(
            f"{option}: not a time: {text!r}",
            "write ISO 8601 (2026-01-02T09:30, 2026-01-02T09:30:00Z, 2026-01-02), "
            "now, +2h (from now) or -1d (ago)",
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC) if utc else parsed.astimezone()  # local zone
    return parsed


def iso(value: dt.datetime) -> str:
    """UTC ISO 8601 with `Z`, the form the API takes."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_api_time(text: str | None) -> dt.datetime | None:
    """A time the API sent (ISO 8601, possibly with `Z`), or None."""
    if not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text)  # 3.11 reads a trailing Z
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_state(text: str) -> list[str]:
    """The states a `-s` word names, as the TUI's `state:` reads it: a state, a prefix
    (`fail`), or a group (`failed`, `finished`, `active`, `pending`)."""
    states = states_named(text)
    if not states:
        raise UserError(f"unknown state {text!r}", "states are: " + ", ".join(STATES)
                        + "; groups: " + ", ".join(STATE_GROUPS) + "; or a prefix (fail)")
    return sorted(states)


def parse_signal(text: str) -> str:
    """`TERM`, `sigterm`, `SIGTERM` → `SIGTERM`; a number passes through."""
    sig = text.strip().upper()
    if sig.isdigit():
        return sig
    if not re.match(r"^[A-Z0-9+-]+$", sig):
        raise UserError(f"not a signal: {text!r}", "write a name like TERM, SIGINT or HUP, or a number")
    return sig if sig.startswith("SIG") else "SIG" + sig

"""Durations, daytimes and times as job files and the CLI write them."""

from __future__ import annotations

import datetime as dt
import re

UTC = dt.UTC

_DURATION_UNITS = {
    "": 1, "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([a-z]*)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from `90`, `30s`, `10m`, `10 min`, `1.5h`, `1d`, `2w`."""
    if isinstance(value, bool):
        raise ValueError(f"not a duration: {value!r}")
    if isinstance(value, (int, float)):
        if value < 0:
            raise ValueError(f"duration must not be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        match = _DURATION.match(value.lower())
        if match and match.group(2) in _DURATION_UNITS:
            return float(match.group(1)) * _DURATION_UNITS[match.group(2)]
    raise ValueError(
        f"not a duration: {value!r} (write seconds, or a number with s, m, h, d or w: '90s', '1.5h')"
    )


def format_duration(seconds: float) -> str:
    """`1:02:03` style, the way elapsed times are shown."""
    seconds = int(round(seconds))
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    days, rem = divmod(seconds, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, secs = divmod(rem, 60)
    body = f"{hours}:{minutes:02d}:{secs:02d}" if hours or days else f"{minutes}:{secs:02d}"
    return f"{sign}{days}d {body}" if days else f"{sign}{body}"


_DAYTIME = re.compile(r"^([0-9]{1,2}):([0-9]{2})(?::([0-9]{2})(\.[0-9]+)?)?$")


def parse_daytime(value: object) -> dt.time:
    """`HH:MM` or `HH:MM:SS`."""
    if isinstance(value, dt.time):
        return value
    if isinstance(value, str):
        match = _DAYTIME.match(value.strip())
        if match:
            hour, minute, second = int(match[1]), int(match[2]), int(match[3] or 0)
            micro = int(round(float(match[4]) * 1e6)) if match[4] else 0
            if hour < 24 and minute < 60 and second < 60:
                return dt.time(hour, minute, second, micro)
    raise ValueError(f"not a daytime: {value!r} (write HH:MM or HH:MM:SS, quoted: \"09:30\")")


def format_daytime(value: dt.time) -> str:
    return value.strftime("%H:%M:%S")


def parse_date(value: object) -> dt.date:
    """A `YYYY-MM-DD` string (or a date)."""
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ValueError(f"not a date: {value!r} (write YYYY-MM-DD)")


def now() -> dt.datetime:
    return dt.datetime.now(UTC)


def parse_time(value: object, *, now_: dt.datetime | None = None) -> dt.datetime:
    """An aware UTC datetime from ISO 8601 (offset or Z), `now`, or `+DURATION`.

    A bare date means 00:00 UTC; a naive time is taken as UTC.  `-DURATION` (ago) is
    accepted too, as the CLI does: `apsisctl serve --since -1d`.
    """
    if isinstance(value, dt.datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text == "now":
            return now_ or now()
        if text.startswith("+"):
            return (now_ or now()) + dt.timedelta(seconds=parse_duration(text[1:]))
        if text.startswith("-") and text[1:2].isdigit():
            try:
                return (now_ or now()) - dt.timedelta(seconds=parse_duration(text[1:]))
            except ValueError:
                pass
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    raise ValueError(
        f"not a time: {value!r} (write ISO 8601 with an offset, like 2026-01-02T09:30:00Z, "
        "or 'now', or '+DURATION')"
    )


def format_time(value: dt.datetime) -> str:
    """ISO 8601 in UTC with a `Z`, the one form times take in the API and the store."""
    value = value.astimezone(UTC)
    text = value.isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")

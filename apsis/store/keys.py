"""Sort keys and pagination cursors: the text forms the indexes compare."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any

from apsis.store.errors import InvalidCursorError

UTC = dt.UTC


# The form `format_time` writes (microseconds, or whole seconds), already in UTC: its key
# is at hand, without parsing. Every event and run row is keyed by such a time.
_UTC_TEXT = re.compile(r"[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
                       r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{6})?Z")


def time_key(value: str | dt.datetime) -> str:
    """A time as fixed-width UTC text, so that comparing texts compares times.

    Naive times are taken as UTC.
    """
    if isinstance(value, str):
        if _UTC_TEXT.fullmatch(value):
            return value if len(value) == 27 else value[:19] + ".000000Z"
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def run_sort_time(run: dict) -> str:
    """The time a run sorts by: its schedule time, else the time it was created."""
    times = run.get("times") or {}
    value = times.get("schedule") or times.get("new")
    if not value:
        # No schedule and no `new` time: the earliest recorded transition.
        stamps = [v for k, v in times.items() if k != "stop" and v]
        value = min((time_key(v) for v in stamps), default=None)
        return value or ""
    return time_key(value)


MAX_RUN_NUM = 2**63 - 1  # SQLite's largest rowid
_RUN_ID = re.compile(r"r[0-9]{1,19}")


def run_num(run_id: str) -> int:
    """123 from `r123`; the integer is the rowid, so lookups by id are direct.

    ASCII digits only (`str.isdigit` takes other scripts' digits too), and no larger
    than a rowid: a longer number is no run, not an overflow deep in the database.
    """
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or int(run_id[1:]) > MAX_RUN_NUM:
        raise ValueError(f"not a run id: {run_id!r} (run ids look like r123)")
    return int(run_id[1:])


def run_id(num: int) -> str:
    return f"r{num}"


def encode_cursor(sort_time: str, num: int) -> str:
    raw = f"{sort_time}|{num}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        sort_time, _, num = raw.rpartition("|")
        if not _ or not re.fullmatch(r"[0-9]{1,19}", num) or int(num) > MAX_RUN_NUM:
            raise ValueError
        return sort_time, int(num)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursorError(
            f"invalid cursor {cursor!r}: pass the cursor of the previous page as it was"
        ) from None


def json_list(values: Iterable[Any]) -> str:
    """A list as one JSON parameter, for `IN (SELECT value FROM json_each(?))`: one
    statement whatever the length, and no limit on the number of SQL variables."""
    return json.dumps(list(values), separators=(",", ":"))

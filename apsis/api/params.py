"""Strict parsing of query strings and JSON bodies: every mistake is a 400 that says what."""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import HTTPConnection, Request

from ..lib.timefmt import parse_time
from ..store.keys import run_num
from .errors import ApiError, bad_request, describe

_INT = re.compile(r"-?[0-9]{1,18}")
MAX_BODY = 1024 * 1024  # a request body: a job, args and times, never megabytes


class Query:
    """The query string of one request, checked against the names the route takes."""

    def __init__(self, conn: HTTPConnection, known: Iterable[str], prefixes: Iterable[str] = ()) -> None:
        self.params = conn.query_params
        known = set(known)
        prefixes = tuple(prefixes)
        for name in self.params:
            if name not in known and not (prefixes and name.startswith(prefixes)):
                allowed = ", ".join(sorted(known) + [p + "NAME" for p in prefixes]) or "none"
                raise bad_request(f"unknown query parameter {name!r} (this path takes: {allowed})",
                                  "bad_param")

    def items(self) -> list[tuple[str, str]]:
        return list(self.params.multi_items())

    def one(self, name: str) -> str | None:
        values = self.params.getlist(name)
        if len(values) > 1:
            raise bad_request(f"query parameter {name!r} given {len(values)} times; give it once",
                              "bad_param")
        return values[0] if values else None

    def many(self, name: str) -> list[str]:
        return self.params.getlist(name)

    def int(self, name: str, default: int | None, lo: int, hi: int | None = None) -> int | None:
        text = self.one(name)
        if text is None:
            return default
        if not _INT.fullmatch(text):
            raise bad_request(f"{name} must be an integer, not {text!r}", "bad_param")
        value = int(text)
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise bad_request(f"{name} must be {bound}, not {value}", "bad_param")
        return value

    def bool(self, name: str, default: bool = False) -> bool:
        text = self.one(name)
        if text is None:
            return default
        if text == "true":
            return True
        if text == "false":
            return False
        raise bad_request(f"{name} must be true or false, not {text!r}", "bad_param")

    def time(self, name: str) -> dt.datetime | None:
        text = self.one(name)
        if text is None:
            return None
        return parse_time_param(name, text)


def parse_time_param(name: str, value: Any) -> dt.datetime:
    if not isinstance(value, str):
        raise bad_request(f"{name} must be a time string, not {describe(value)}", "bad_time")
    try:
        return parse_time(value)
    except (ValueError, OverflowError) as exc:
        raise bad_request(f"{name}: {exc}", "bad_time") from None


def check_run_id(run_id: str) -> str:
    """A run id that cannot exist is simply not found: 404, like any unknown run."""
    try:
        run_num(run_id)
    except ValueError as exc:
        raise ApiError(404, "unknown_run", f"no run {run_id!r}: {exc}") from None
    return run_id


async def json_body(request: Request) -> dict[str, Any]:
    """The request's JSON object; 400 if it is not JSON or not an object, 413 if huge."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY:
            raise ApiError(413, "too_large", f"request body over {MAX_BODY} bytes")
    if not body.strip():
        raise bad_request("this request needs a JSON object body", "bad_json")
    try:
        value = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise bad_request(f"request body is not valid JSON: {exc}", "bad_json") from None
    if not isinstance(value, dict):
        raise bad_request(f"request body must be a JSON object, not {describe(value)}", "bad_body")
    where = _not_unicode(value, "")
    if where is not None:
        # JSON may escape a lone surrogate (\ud800): it is no character, so it can be
        # neither stored nor sent back.
        raise ApiError(422, "bad_text", f"{where or 'the body'}: a string holds a lone "
                       "surrogate (an escape such as \\ud800 that is no Unicode character)")
    return value


def _not_unicode(value: Any, path: str) -> str | None:
    """Where in a JSON value a string (or key) cannot be encoded as UTF-8, if anywhere."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
    elif isinstance(value, dict):
        for key, item in value.items():
            found = _not_unicode(key, path) or _not_unicode(item, f"{path}.{key}" if path else key)
            if found is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _not_unicode(item, f"{path}[{i}]")
            if found is not None:
                return found
    return None

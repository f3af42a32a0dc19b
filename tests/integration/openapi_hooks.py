"""Schemathesis hooks for test_api_openapi.py (loaded by `st run` via SCHEMATHESIS_HOOKS).

The OpenAPI document states every single value exactly; what no JSON Schema can state
is a rule between two values or between a value and the daemon's jobs (the document
says those in words). Generated requests that break such a rule are left out here,
so that `positive_data_acceptance` holds the server to everything else. The maps keep
the workload harmless and small: inline jobs run `true`, never generated shell text.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import schemathesis

from apsis.api.routes import MAX_COUNT
from apsis.lib.timefmt import parse_time
from apsis.store.keys import decode_cursor

JOBS = {
    "noop": "program: {type: no-op}\n",
    "data/load prices": "params: [date]\nprogram: {type: no-op}\nmetadata: {labels: [prices]}\n",
}
PARAMS = {"noop": set(), "data/load prices": {"date"}}
SLACK = dt.timedelta(seconds=5)  # `now` here and `now` in the daemon differ a little
MAX_RUNS = 3  # runs per generated POST /runs, instead of up to 10 000


def _time(value: Any) -> dt.datetime | None:
    try:
        return parse_time(value)
    except (ValueError, OverflowError, TypeError):
        return None


def _ordered(first: Any, then: Any) -> bool:
    """False if both are times and `then` is not clearly after `first`."""
    a, b = _time(first), _time(then)
    try:
        return a is None or b is None or b >= a + SLACK
    except OverflowError:  # a near the year 9999
        return False


def _int(value: Any) -> int | None:
    """A query integer as generated: an int, or its text (the coverage phase)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return None


@schemathesis.hook
def filter_case(ctx: Any, case: Any) -> bool:
    """Every phase (coverage too) passes its cases through here."""
    label = case.operation.label
    query = case.query or {}
    if label == "GET /runs/{run_id}/output/{output_id}":
        start, end = _int(query.get("start", 0)), _int(query.get("end"))
        return start is None or end is None or end >= start
    if label == "GET /jobs/{job_id}/schedule":
        return _ordered(query.get("from", "now"), query.get("to", "+3650d"))
    if label == "GET /runs" and isinstance(query.get("cursor"), str):
        try:
            decode_cursor(query["cursor"])  # opaque: only a page's own cursor is one
        except ValueError:
            return False
    if label == "POST /runs" and isinstance(case.body, dict):
        return _runs_body_ok(case.body)
    return True


def _runs_body_ok(body: dict[str, Any]) -> bool:
    times = body.get("times")
    if isinstance(times, dict) and times.get("stop") is not None:
        if not _ordered(times.get("schedule") or "now", times["stop"]):
            return False
    args = body.get("args") or {}
    if not isinstance(args, dict):
        return True
    job = body.get("job")
    if isinstance(job, dict):
        params = job.get("params")  # one, a list or a mapping
        params = [] if params is None else [params] if isinstance(params, str) else params
        if isinstance(params, (list, dict)) and all(isinstance(p, str) for p in params):
            return set(args) == set(params)  # an inline job's args are its params
        return True
    job_id = body.get("job_id")
    return not (isinstance(job_id, str) and job_id in PARAMS and set(args) != PARAMS[job_id])


def _harmless(argv: Any) -> Any:
    """Every string of an argv made `true`; any other item stays, so a generated invalid
    argv stays invalid and no generated text is ever run."""
    if isinstance(argv, str):
        return "true"
    if not isinstance(argv, list):
        return argv
    return [("true" if isinstance(a, str) else a) for a in argv]


@schemathesis.hook
def map_case(ctx: Any, case: Any) -> Any:
    body = case.body
    if case.operation.label != "POST /runs" or not isinstance(body, dict):
        return case
    count = body.get("count")
    if isinstance(count, int) and not isinstance(count, bool) and 1 <= count <= MAX_COUNT:
        body["count"] = min(count, MAX_RUNS)  # still valid: a generated invalid count stays
    job = body.get("job")
    if isinstance(job, dict):
        program = job.get("program")
        if isinstance(program, str):
            job["program"] = "true"
        elif isinstance(program, list):
            job["program"] = _harmless(program)
        elif isinstance(program, dict):
            if isinstance(program.get("command"), str):
                program["command"] = "true"
            if "argv" in program:
                program["argv"] = _harmless(program["argv"])
    return case

"""The JSON Schema of job files, for editors (yaml-language-server and friends).

It describes the shape; `apsisctl check-job` remains the authority (templates,
calendars, dependencies and cycles are beyond what a schema can say).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

DURATION = {"description": "Seconds, or a number with a unit: 30s, 10m, 1.5h, 1d, 2w",
            "oneOf": [{"type": "number", "minimum": 0}, {"type": "string"}]}
DAYTIME = {"type": "string", "pattern": r"^[0-9]{1,2}:[0-9]{2}(:[0-9]{2})?$",
           "description": "HH:MM or HH:MM:SS (quote it)"}
ARGS = {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}}
STATE = {"enum": ["new", "scheduled", "waiting", "starting", "running", "stopping",
                  "success", "failure", "error", "skipped"]}
STATES = {"oneOf": [STATE, {"type": "array", "items": STATE}]}
SIGNAL = {"type": ["string", "integer"], "description": "A signal name like SIGTERM"}
IF = {"type": "object", "properties": {"states": STATES}, "additionalProperties": False}
# `type: mypackage.module.Class`: a family member of the user's own (built-in names have no dot).
EXTENSION = {"type": "object", "properties": {"type": {"type": "string", "pattern": r"\."}},
             "required": ["type"]}


def _obj(type_name: str | None, props: dict[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    properties = dict(props)
    req = list(required)
    if type_name is not None:
        properties["type"] = {"const": type_name}
        req = ["type", *req]
    return {"type": "object", "properties": properties, "required": req,
            "additionalProperties": False}


def _one_or_list(item: dict[str, Any]) -> dict[str, Any]:
    return {"oneOf": [item, {"type": "array", "items": item}]}


def _schedules() -> list[dict[str, Any]]:
    common = {"enabled": {"type": "boolean"}, "args": ARGS, "jitter": DURATION,
              "catchup": {"enum": ["all", "latest", "none"]}}
    dst = {"dst_gap": {"enum": ["end", "shift", "skip"]}, "dst_fold": {"enum": ["first", "second"]}}
    cal = {"calendar": {"type": "string"}}
    tz = {"tz": {"type": "string", "description": "An IANA time zone, e.g. America/New_York"}}
    shifted_daytime = {"oneOf": [DAYTIME, _obj(None, {"daytime": DAYTIME, "date_shift": {"type": "integer"},
                                                      "cal_shift": {"type": "integer"}}, ["daytime"])]}
    return [
        _obj("interval", {**common, "interval": DURATION, "phase": DURATION}, ["interval"]),
        _obj("daily", {**common, **dst, **cal, **tz,
                       "daytime": {"oneOf": [DAYTIME, {"type": "array", "items": DAYTIME}]},
                       "date_shift": {"type": "integer"}, "cal_shift": {"type": "integer"},
                       "time_shift": DURATION}, ["tz", "daytime"]),
        _obj("daily-interval", {**common, **dst, **cal, **tz, "start": shifted_daytime,
                                "stop": shifted_daytime, "interval": DURATION},
             ["tz", "start", "stop", "interval"]),
        _obj("cron", {**common, **dst, **cal, **tz, "expr": {"type": "string"}}, ["expr", "tz"]),
        _obj("explicit", {**common, "times": {"oneOf": [{"type": "string"},
                                                        {"type": "array", "items": {"type": "string"}}]}},
             ["times"]),
    ]


def job_schema() -> dict[str, Any]:
    process = {
        "host": {"type": "string"}, "user": {"type": "string"},
        "env": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}},
        "cwd": {"type": "string"},
        "timeout": {"oneOf": [DURATION, _obj(None, {"duration": DURATION, "signal": SIGNAL}, ["duration"])]},
        "stop": _obj(None, {"signal": SIGNAL, "grace_period": DURATION}),
        "outputs": {"enum": ["combined", "split"]},
    }
    program = {"oneOf": [
        {"type": "string", "description": "A shell command (run by /bin/bash -c)"},
        {"type": "array", "items": {"type": "string"}, "description": "An argv, no shell"},
        _obj("no-op", {"duration": DURATION, "success": {"type": ["boolean", "null"]}}),
        _obj("shell", {**process, "command": {"type": "string"}}, ["command"]),
        _obj("program", {**process, "argv": {"type": "array", "items": {"type": "string"}}}, ["argv"]),
        EXTENSION,
    ]}
    schedules = _schedules()
    start_stop = _obj(None, {
        "start": {"oneOf": schedules},
        "stop": {"oneOf": [_obj("duration", {"duration": DURATION}, ["duration"]),
                           _obj("daytime", {"daytime": DAYTIME, "tz": {"type": "string"}}, ["daytime"])]},
    }, ["start", "stop"])
    condition = {"oneOf": [
        _obj("dependency", {"job_id": {"type": "string"}, "args": ARGS, "states": STATES,
                            "exist": {"oneOf": [{"type": ["boolean", "null"]}, STATES]}}, ["job_id"]),
        _obj("max_running", {"count": {"type": ["integer", "string"]}, "job_id": {"type": "string"},
                             "args": ARGS}),
        _obj("skip_duplicate", {"check_states": STATES, "target_state": STATE}),
        _obj("const", {"value": {}}),
        EXTENSION,
    ]}
    action = {"oneOf": [
        _obj("schedule", {"job_id": {"type": "string"}, "args": ARGS, "if": IF}, ["job_id"]),
        _obj("retry", {"count": {"type": "integer", "minimum": 0}, "delay": DURATION,
                       "backoff": {"type": "number", "exclusiveMinimum": 0}, "if": IF}),
        _obj("command", {"argv": {"type": "array", "items": {"type": "string"}},
                         "command": {"type": "string"}, "if": IF}),
        _obj("webhook", {"url": {"type": "string"}, "headers": ARGS, "if": IF}, ["url"]),
        EXTENSION,
    ]}
    expand = {"type": "object", "additionalProperties": {
        "type": "object", "additionalProperties": {"type": "object"}}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://apsis.dev/schema/job.json",
        "title": "Apsis job file",
        "type": "object",
        "properties": {
            "params": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}},
                                 {"type": "object", "description": "Its keys are the params"}]},
            "metadata": {"type": "object", "properties": {
                "description": {"type": "string"},
                "labels": {"type": "array", "items": {"type": "string"}}}},
            "schedule": _one_or_list({"oneOf": [*schedules, start_stop, EXTENSION]}),
            "program": program,
            "condition": _one_or_list(condition),
            "action": _one_or_list(action),
            "successors": _one_or_list({"oneOf": [{"type": "string"},
                                                  _obj(None, {"job_id": {"type": "string"}, "args": ARGS},
                                                       ["job_id"])]}),
            "expand": expand,
            "ad_hoc": {"type": "boolean"},
            "job_id": {"type": "string"},
        },
        "required": ["program"],
        "additionalProperties": False,
    }

"""The OpenAPI 3.0 document of `/api/v1`, built by hand beside the routes.

Tests validate it and run schemathesis against a real daemon, so it stays what the
server does. Websocket paths are listed as GET with `101` (and `426` for a plain GET).
"""

from __future__ import annotations

import signal
from typing import Any

from ..model.event_types import EVENT_TYPES
from .routes import JSON_LINES, MAX_COUNT, MAX_PAGE, MAX_PAGES, MAX_SCHEDULE

STATES = ["new", "scheduled", "waiting", "starting", "running", "stopping",
          "success", "failure", "error", "skipped"]

JSON = "application/json"

# Values are described exactly: what a schema allows, the server takes, and what it
# forbids, the server refuses (schemathesis checks both ways). Times and durations are
# patterns of the forms the server parses (a narrower date grammar than the server's:
# no 29 February), so a generated value is one the server accepts.
_DURATION = r"[0-9]{1,5}(\.[0-9]{1,3})?(s|m|h|d|w)?"
_DATE = (r"[12][0-9]{3}-((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)"
         r"|(0[13578]|1[02])-31)")
_DAYTIME = (r"T([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{1,6})?)?"
            r"(Z|[+-](0[0-9]|1[0-3]):[0-5][0-9])?")
TIME = {"type": "string", "pattern": f"^(now|[+-]{_DURATION}|{_DATE}({_DAYTIME})?)$",
        "description": "An ISO 8601 date or time (UTC without an offset), `now`, `+DURATION` "
                       "(from now) or `-DURATION` (ago).", "example": "now"}
DURATION = {"type": "string", "pattern": f"^{_DURATION}$",
            "description": "Seconds, or a number with s, m, h, d or w.", "example": "90d"}
MAX_INT = 10**18 - 1  # integer query parameters have at most 18 digits
RUN_ID_PATTERN = "^r[0-9]{1,18}$"
# A job id as a path in the jobs directory: no empty part, none led by a dot.
JOB_ID_PATTERN = r"^[^./\x00-\x20][^/\x00-\x1f]*(/[^./\x00-\x1f][^/\x00-\x1f]*)*$"


def signal_names() -> list[str]:
    """Every spelling the server takes for a signal: SIGTERM, TERM and 15."""
    names = sorted(signal.Signals.__members__)
    numbers = sorted({int(s) for s in signal.Signals})
    return names + [n[3:] for n in names] + [str(n) for n in numbers]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": schema}}}


_ERRORS = {
    400: "Bad input: a malformed parameter or body.",
    401: "No token, or an unknown one (only when the daemon has tokens).",
    403: "The token's role is too low.",
    404: "No such run, job or output.",
    409: "The run's state does not allow the operation.",
    413: "The body is too large.",
    422: "Well-formed but invalid: wrong args for the job, an invalid inline job, a string "
         "holding a lone surrogate (`bad_text`).",
    503: "The daemon cannot use its database (`store_unavailable`), or is shutting down.",
    507: "The disk is full (`disk_full`, naming the database): nothing was written.",
}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(s): {"$ref": f"#/components/responses/E{s}"} for s in (400, 401, 403) + statuses}


def _path_param(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description,
            "schema": schema or {"type": "string"}}


def _query(name: str, description: str, schema: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": schema, **extra}


RUN_ID = _path_param("run_id", "A run id, like r123 (any other text is an unknown run: 404).",
                     {"type": "string", "example": "r1"})
JOB_ID = _path_param("job_id", "The exact job id: the job file's path in the jobs directory "
                     "without .yaml; slashes are part of it (send them as / or %2F).")
OUTPUT_ID = _path_param("output_id", "`output` (combined), or `stdout` / `stderr` (split).",
                        {"type": "string", "example": "output"})

_RUN = {
    "type": "object",
    "description": "A run. Lists and events may carry a summary with fewer keys.",
    "required": ["run_id", "job_id", "args", "state", "times"],
    "properties": {
        "run_id": {"type": "string", "pattern": "^r[0-9]+$"},
        "job_id": {"type": "string"},
        "args": {"type": "object", "additionalProperties": {"type": "string"}},
        "state": {"type": "string", "enum": STATES},
        "labels": {"type": "array", "items": {"type": "string"}},
        "times": {"type": "object", "description": "STATE → ISO time of the transition, plus "
                  "`schedule`, `stop`, and `due` (the schedule time plus the run's random "
                  "`jitter` delay, only when its schedule has `jitter`).", "additionalProperties": {"type": "string"}},
        "message": _nullable({"type": "string"}),
        "program": _nullable({"type": "object", "description": "The program, templates expanded."}),
        "conditions": {"type": "array", "items": {"type": "object"}},
        "actions": {"type": "array", "items": {"type": "object"}},
        "rerun_of": _nullable({"type": "string"}),
        "attempt": {"type": "integer", "minimum": 1},
        "exit_code": _nullable({"type": "integer"}),
        "signal": _nullable({"type": "string"}),
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["output_id", "length"],
            "properties": {"output_id": {"type": "string"}, "length": {"type": "integer"}}}},
        "ad_hoc": {"type": "boolean"},
        "expected": {"type": "boolean", "description": "Created by a schedule, not a request."},
    },
}

_JOB: dict[str, Any] = {
    "type": "object",
    "required": ["job_id", "params", "program"],
    "properties": {
        "job_id": {"type": "string"},
        "params": {"type": "array", "items": {"type": "string"}},
        "schedule": {"type": "array", "items": {"type": "object"}},
        "program": {"type": "object"},
        "condition": {"type": "array", "items": {"type": "object"}},
        "action": {"type": "array", "items": {"type": "object"}},
        "metadata": {"type": "object"},
        "expand": {"type": "object"},
        "ad_hoc": {"type": "boolean"},
    },
}

# One job as GET /jobs/{job_id} answers: the parsed job plus its file's text. Lists
# and events leave the text out: it is for a person reading one job.
_JOB_DETAIL = {
    **_JOB,
    "required": [*_JOB["required"], "source"],
    "properties": {**_JOB["properties"], "source": _nullable({
        "type": "string",
        "description": "The job file's text as written (comments included); null for a "
                       "job that has no file."})},
}

# Numbers stand for their text, as a YAML job file writes `argv: [sleep, 5]`; an argv
# of one word may be that word.
_TEXT = {"oneOf": [{"type": "string"}, {"type": "number"}]}
_ARGV = {"type": "array", "items": _TEXT, "minItems": 1}
_PROGRAM = {"description": "A program: a shell command, an argv list, or an object with "
                          "`type` (more keys in docs/jobs.md).", "oneOf": [
    {"type": "string"},
    _ARGV,
    {"type": "object", "required": ["type"], "additionalProperties": False, "properties": {
        "type": {"type": "string", "enum": ["no-op"]},
        "duration": {"oneOf": [DURATION, {"type": "number", "minimum": 0}]},
        "success": _nullable({"type": "boolean"})}},
    {"type": "object", "required": ["type", "command"], "additionalProperties": False,
     "properties": {"type": {"type": "string", "enum": ["shell"]}, "command": _TEXT}},
    {"type": "object", "required": ["type", "argv"], "additionalProperties": False,
     "properties": {"type": {"type": "string", "enum": ["program"]},
                    "argv": {"oneOf": [*_TEXT["oneOf"], _ARGV]}}}]}

_CREATE_RUNS = {
    "type": "object",
    "description": "Runs of a job of the jobs directory (`job_id`, role operate), or of an inline "
                   "ad hoc job (`job`, role admin). An inline job is a job file's content as JSON; "
                   "it is labelled `ad-hoc`, marked `ad_hoc`, and its id is its `job_id` if given "
                   "(not one of the jobs directory) else `adhoc/` + 12 hex digits of its hash.",
    "additionalProperties": False,
    "properties": {
        "job_id": {"type": "string"},
        "job": {"type": "object", "required": ["program"], "additionalProperties": False,
                "description": "A job file's content as JSON. Listed here: what a one-off "
                "job needs; the server takes every key of a job file (schedule, condition, "
                "action, successors: docs/jobs.md) and refuses any other.", "properties": {
            "program": _PROGRAM,
            "params": _nullable({"description": "One param, a list, or a mapping whose keys "
                                                "are the params (as in a job file).",
                                 "oneOf": [{"type": "string"},
                                           {"type": "array", "items": {"type": "string"},
                                            "uniqueItems": True},
                                           {"type": "object"}]}),
            "job_id": _nullable({"type": "string", "pattern": JOB_ID_PATTERN,
                                 "description": "Absent or null: `adhoc/` + a hash."}),
            "metadata": _nullable({"type": "object", "properties": {"labels": {
                "description": "A label or a list; numbers and booleans become their text, "
                               "as in a YAML job file.",
                "oneOf": [{"type": "string"}, {"type": "array", "items": {"oneOf": [
                    {"type": "string"}, {"type": "number"}, {"type": "boolean"}]}}]}}})}},
        "args": _nullable({"type": "object", "additionalProperties": {"type": "string"},
                           "description": "One string for each of the job's params, no "
                                          "others (null: none)."}),
        "times": _nullable({"type": "object", "additionalProperties": False, "properties": {
            "schedule": _nullable({**TIME, "description": "When (default, or null: `now`): "
                                   + TIME["description"]}),
            "stop": _nullable({**TIME, "description": "When to stop the runs, after `schedule` "
                               "(null: not stopped): " + TIME["description"]})}}),
        "count": {"type": "integer", "minimum": 1, "maximum": MAX_COUNT, "default": 1},
    },
    "oneOf": [{"required": ["job_id"]}, {"required": ["job"]}],
}

_EVENT = {
    "type": "object",
    "required": ["seq", "type"],
    "description": "One event stream message (see docs/api.md for each type's keys).",
    "properties": {
        "seq": {"type": "integer"},
        "ts": {"type": "string"},
        "type": {"type": "string", "enum": list(EVENT_TYPES)},
    },
}

_SCHEMAS = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {
        "type": "object", "required": ["code", "message"],
        "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
    "Run": _RUN,
    "RunPage": {"type": "object", "required": ["runs", "seq", "cursor"], "properties": {
        "runs": {"type": "array", "items": _ref("Run")},
        "seq": {"type": "integer", "description": "The event seq this page is consistent with: "
                "replay events after it to keep the page current."},
        "cursor": _nullable({"type": "string", "description": "Pass as `cursor` for the next "
                             "(older) page; null on the last page."})}},
    "CreatedRuns": {"type": "object", "required": ["runs"],
                    "properties": {"runs": {"type": "array", "items": _ref("Run")}}},
    "CreateRuns": _CREATE_RUNS,
    "Job": _JOB,
    "JobDetail": _JOB_DETAIL,
    "JobList": {"type": "object", "required": ["jobs"],
                "properties": {"jobs": {"type": "array", "items": _ref("Job")}}},
    "JobSchedule": {"type": "object", "required": ["job_id", "from", "to", "runs"], "properties": {
        "job_id": {"type": "string"},
        "from": {"type": "string"},
        "to": {"type": "string"},
        "runs": {"type": "array", "items": {
            "type": "object", "required": ["job_id", "args", "time", "schedule_index"],
            "properties": {
                "job_id": {"type": "string"},
                "args": {"type": "object", "additionalProperties": {"type": "string"}},
                "time": {"type": "string"},
                "schedule_index": {"type": "integer"},
                "stop": {"type": "string"},
                "skip_reason": {"type": "string"}}}}}},
    "RunLog": {"type": "object", "required": ["run_id", "log"], "properties": {
        "run_id": {"type": "string"},
        "log": {"type": "array", "items": {
            "type": "object", "required": ["ts", "message"], "properties": {
                "run_id": {"type": "string"},
                "ts": {"type": "string"},
                "state": _nullable({"type": "string", "enum": STATES}),
                "message": _nullable({"type": "string"})}}}}},
    "OutputList": {"type": "object", "required": ["run_id", "outputs"], "properties": {
        "run_id": {"type": "string"},
        "outputs": {"type": "array", "items": {
            "type": "object", "required": ["output_id", "length", "content_type"], "properties": {
                "output_id": {"type": "string"},
                "length": {"type": "integer", "minimum": 0},
                "original_length": {"type": "integer", "minimum": 0},
                "content_type": {"type": "string"}}}}}},
    "Alive": {"type": "object", "required": ["status", "version", "seq"], "properties": {
        "status": {"type": "string", "enum": ["ok"]},
        "version": {"type": "string"},
        "started_at": {"type": "string"},
        "seq": {"type": "integer", "description": "The last event's seq."},
        "role": {"type": "string", "enum": ["leader", "standby"],
                 "description": "Among the daemons sharing the database (SPEC §1.14); a daemon "
                                "alone on its database is the leader."},
        "leader": {"type": "string", "nullable": True,
                   "description": "The leader's advertised URL, if it gave one."},
        "epoch": {"type": "integer", "minimum": 0,
                  "description": "The leadership epoch (0 on SQLite)."}}},
    "Reload": {"type": "object", "required": ["added", "changed", "removed", "errors", "dry_run"],
               "properties": {k: {"type": "array", "items": {"type": "string"}}
                              for k in ("added", "changed", "removed", "errors")}
               | {"dry_run": {"type": "boolean"}}},
    "Shutdown": {"type": "object", "required": ["status", "restart"], "properties": {
        "status": {"type": "string"}, "restart": {"type": "boolean"}}},
    "Archive": {"type": "object", "required": ["moved", "before", "archive"], "properties": {
        "moved": {"type": "integer", "description": "Runs moved to the archive."},
        "before": {"type": "string", "description": "Finished runs scheduled before this moved."},
        "archive": {"type": "string", "description": "The archive database's path."}}},
    "Stats": {"type": "object", "required": ["version", "last_seq", "store"], "properties": {
        "version": {"type": "string"},
        "started_at": {"type": "string"},
        "uptime_seconds": {"type": "number"},
        "jobs": {"type": "integer"},
        "unfinished_runs": {"type": "integer"},
        "event_subscribers": {"type": "integer"},
        "last_seq": {"type": "integer"},
        "db_commit_seconds": {"type": "object"},
        "store": {"type": "object", "description": "Database sizes and counts."}}},
    "Event": _EVENT,
}


def _op(summary: str, responses: dict[str, Any], *, params: list[dict[str, Any]] | None = None,
        role: str = "read", body: dict[str, Any] | None = None, op_id: str) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": op_id,
                          "description": f"Role: {role}.", "responses": responses}
    if params:
        op["parameters"] = params
    if body:
        op["requestBody"] = body
    return op


# What a client does next with a run it created (schemathesis follows these too).
_RUN_LINKS = {op: {"operationId": op, "parameters": {"run_id": "$response.body#/runs/0/run_id"}}
              for op in ("get_run", "run_log", "run_outputs", "run_output", "skip_run",
                         "start_run", "stop_run", "rerun_run", "signal_run", "mark_run")}


def _run_operation(name: str, what: str) -> dict[str, Any]:
    return {"post": _op(what, {"200": _json(_ref("Run"), "The run after the operation "
                                                          "(for rerun: the new run)."),
                               **_errors(404, 409, 503, 507)},
                        params=[RUN_ID], role="operate", op_id=f"{name}_run")}


def _websocket(summary: str, params: list[dict[str, Any]], op_id: str) -> dict[str, Any]:
    return {"get": _op(summary, {
        "101": {"description": "Switching protocols: the websocket stream."},
        "426": _json(_ref("Error"), "A plain HTTP GET: connect with a websocket client."),
        **_errors(404)}, params=params, op_id=op_id)}


def openapi_document() -> dict[str, Any]:
    """The whole document; paths are relative to the server URL `/api/v1`."""
    paths: dict[str, Any] = {
        "/alive": {"get": _op("Liveness, version and the last event seq",
                              {"200": _json(_ref("Alive"), "The daemon is up."),
                               **_errors(503)}, op_id="alive")},
        "/jobs": {"get": _op("Jobs, optionally those carrying every given label", {
            "200": _json(_ref("JobList"), "Jobs sorted by id."), **_errors()},
            params=[_query("label", "Only jobs with this label (repeatable: all of them).",
                           {"type": "array", "items": {"type": "string"}}, style="form",
                           explode=True)], op_id="list_jobs")},
        "/jobs/{job_id}": {"get": _op("One job, by its exact id", {
            "200": _json(_ref("JobDetail"), "The job, parsed and normalised, and its file's "
                         "text."), **_errors(404)},
            params=[JOB_ID], op_id="get_job")},
        "/jobs/{job_id}/schedule": {"get": _op("Runs the job's schedules ask for in a window", {
            "200": _json(_ref("JobSchedule"), "Expected runs in time order."), **_errors(404)},
            params=[JOB_ID,
                    _query("from", "Window start (default now).", TIME),
                    _query("to", "Window end, exclusive, not before `from` (default: ten years "
                                 "after from; `limit` bounds the answer).", TIME),
                    _query("limit", "At most this many runs.",
                           {"type": "integer", "minimum": 1, "maximum": MAX_SCHEDULE,
                            "default": 100})],
            op_id="job_schedule")},
        "/runs": {
            "get": _op("Runs, newest first, filtered in the database, paginated", {
                "200": {"description": "A page of runs; with `pages`, JSON Lines: one page a "
                                       "line.",
                        "content": {JSON: {"schema": _ref("RunPage")},
                                    JSON_LINES: {"schema": _ref("RunPage")}}},  # each line
                **_errors()},
                params=[
                    _query("job_id", "Exact job id (repeatable: runs of any of them, as "
                                     "`apsis runs FOLDER/` asks for a folder's jobs).",
                           {"type": "array", "items": {"type": "string"}}, style="form",
                           explode=True),
                    _query("state", "Runs in any of these states (repeatable).",
                           {"type": "array", "items": {"type": "string", "enum": STATES}},
                           style="form", explode=True),
                    _query("since", "Schedule time at or after.", TIME),
                    _query("until", "Schedule time before.", TIME),
                    _query("label", "Runs carrying this label (repeatable: all of them).",
                           {"type": "array", "items": {"type": "string"}}, style="form",
                           explode=True),
                    _query("limit", "Page size.", {"type": "integer", "minimum": 1,
                                                   "maximum": MAX_PAGE, "default": 100}),
                    _query("cursor", "The `cursor` of the previous page, as it was (any other "
                                     "text: 400 `bad_cursor`).", {"type": "string"}),
                    _query("summary", "true: each run is its summary (run_id, job_id, args, "
                                      "state, labels, times, message, rerun_of, attempt, "
                                      "exit_code, signal, ad_hoc, expected), without program, "
                                      "conditions, actions or outputs: what a table draws, a "
                                      "fraction of the bytes (the TUI loads its runs so).",
                           {"type": "boolean", "default": False}),
                    _query("pages", "Up to this many pages in one answer, streamed as JSON "
                                    "Lines (`application/jsonl`): each line is a page as "
                                    "without `pages`, the next page the one its `cursor` "
                                    "names, read in its own snapshot with its own `seq`; the "
                                    "last line's `cursor` goes on from there. One request "
                                    "instead of N (the TUI loads 100 000 runs so).",
                           {"type": "integer", "minimum": 1, "maximum": MAX_PAGES}),
                ], op_id="list_runs"),
            "post": _op("Create runs of a job, or of an inline ad hoc job", {
                "201": {**_json(_ref("CreatedRuns"), "The runs, committed to the database."),
                        "links": _RUN_LINKS},
                **_errors(404, 409, 413, 422, 503, 507)},
                role="operate (admin for an inline job)",
                body={"required": True, "content": {JSON: {"schema": _ref("CreateRuns")}}},
                op_id="create_runs"),
        },
        "/runs/{run_id}": {"get": _op("One run", {
            "200": _json(_ref("Run"), "The run."), **_errors(404)},
            params=[RUN_ID], op_id="get_run")},
        "/runs/{run_id}/log": {"get": _op("The run's log: transitions and messages", {
            "200": _json(_ref("RunLog"), "Entries, oldest first."), **_errors(404)},
            params=[RUN_ID], op_id="run_log")},
        "/runs/{run_id}/outputs": {"get": _op("The run's outputs and their lengths", {
            "200": _json(_ref("OutputList"), "Outputs."), **_errors(404)},
            params=[RUN_ID], op_id="run_outputs")},
        "/runs/{run_id}/output/{output_id}": {
            "get": {**_op("Raw output bytes [start, end); or, over a websocket, live output", {
                "200": {"description": "The bytes (clamped to what exists). A running "
                                       "program's output over `output.max_bytes` is its head "
                                       "and tail with a line saying what was cut, as stored.",
                        "headers": {
                            "X-Apsis-Output-Start": {"description": "The offset of the first "
                                                     "byte sent.", "schema": {"type": "integer"}},
                            "X-Apsis-Output-Cut": {"description": "Bytes left out between the "
                                                   "head and the tail (only when some were).",
                                                   "schema": {"type": "integer"}}},
                        "content": {"application/octet-stream": {
                            "schema": {"type": "string", "format": "binary"}}}},
                "101": {"description": "Websocket: binary frames from `start` as the output "
                                       "grows; closed with 1000 when the run is finished and "
                                       "every byte is sent."},
                **_errors(404)},
                params=[RUN_ID, OUTPUT_ID,
                        _query("start", "First byte.", {"type": "integer", "minimum": 0,
                                                        "maximum": MAX_INT, "default": 0}),
                        _query("end", "Byte after the last, not before `start` (HTTP only).",
                               {"type": "integer", "minimum": 0, "maximum": MAX_INT})],
                op_id="run_output")}},
        "/runs/{run_id}/skip": _run_operation("skip", "Skip a scheduled or waiting run"),
        "/runs/{run_id}/start": _run_operation("start", "Start a scheduled or waiting run now, "
                                                        "ignoring its conditions"),
        "/runs/{run_id}/stop": _run_operation("stop", "Stop a running run"),
        "/runs/{run_id}/rerun": _run_operation("rerun", "Create a new run of a finished run's "
                                                        "instance"),
        "/runs/{run_id}/signal/{signal}": {"post": _op("Send a signal to a running run", {
            "200": _json(_ref("Run"), "The run."), **_errors(404, 409, 422, 503, 507)},
            params=[RUN_ID, _path_param("signal", "SIGTERM, TERM or 15 (names in any case).",
                                        {"type": "string", "enum": signal_names(),
                                         "example": "SIGTERM"})],
            role="operate", op_id="signal_run")},
        "/runs/{run_id}/mark/{state}": {"post": _op("Mark a finished run another finished state", {
            "200": _json(_ref("Run"), "The run."), **_errors(404, 409, 422, 503, 507)},
            params=[RUN_ID, _path_param("state", "The new state.",
                                        {"type": "string",
                                         "enum": ["success", "failure", "error", "skipped"]})],
            role="operate", op_id="mark_run")},
        "/control/reload": {"post": _op("Reload the jobs directory", {
            "200": _json(_ref("Reload"), "What changed (nothing applied with dry_run)."),
            **_errors(503, 507)},
            params=[_query("dry_run", "Only report.", {"type": "boolean", "default": False})],
            role="admin", op_id="reload")},
        "/control/shutdown": {"post": _op("Stop the daemon (exit code 75 with restart)", {
            "202": _json(_ref("Shutdown"), "Stopping."), **_errors()},
            params=[_query("restart", "Ask the supervisor to restart it.",
                           {"type": "boolean", "default": False})],
            role="admin", op_id="shutdown")},
        "/control/archive": {"post": _op(
            "Move finished runs older than older_than to the archive database (runs.archive, "
            "else beside the database), in chunks that do not block the daemon", {
                "200": _json(_ref("Archive"), "What moved."), **_errors(503, 507)},
            params=[_query("older_than", "Finished runs scheduled more than this long ago: "
                                         "90d, 12w.", DURATION, required=True)],
            role="admin", op_id="archive")},
        "/control/stats": {"get": _op("Daemon and database statistics", {
            "200": _json(_ref("Stats"), "Statistics."), **_errors()}, op_id="stats")},
        "/metrics": {"get": _op("Prometheus metrics, names prefixed apsis_", {
            "200": {"description": "Prometheus text format.",
                    "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors()}, op_id="metrics")},
        "/events": _websocket(
            "The event stream (websocket): JSON messages with a strictly increasing seq",
            [_query("since", "Replay events after this seq, then go live (omitted: from now). "
                             "Too old: the first message is {type: reset}.",
                    {"type": "integer", "minimum": 0, "maximum": MAX_INT}),
             _query("run_id", "Only events of this run.",
                    {"type": "string", "pattern": RUN_ID_PATTERN}),
             _query("job_id", "Only events carrying this job (transitions, job events).",
                    {"type": "string"}),
             _query("type", "Only these event types (repeatable).",
                    {"type": "array", "items": {"type": "string"}}, style="form", explode=True),
             _query("batch", "1: each frame is a JSON array of every event ready for this "
                             "client, in seq order, up to ~1 MiB (a burst costs a few frames, "
                             "not one per event); 0 (default): one event per frame.",
                    {"type": "integer", "enum": [0, 1], "default": 0}),
             _query("token", "The token, for websocket clients that cannot send headers.",
                    {"type": "string"})],
            "events"),
        "/openapi.json": {"get": {"summary": "This document", "operationId": "openapi",
                                  "security": [],
                                  "responses": {"200": _json({"type": "object"}, "OpenAPI 3.0.")}}},
    }
    return {
        "openapi": "3.0.3",
        "info": {"title": "Apsis", "version": "1",
                 "description": "The Apsis daemon's HTTP API. Errors are "
                                "`{\"error\": {\"code\", \"message\"}}`. With `api.tokens` "
                                "configured every path but this document needs a bearer token "
                                "of a role (read < operate < admin); without, the API is open "
                                "(loopback only). Websocket close codes: 1000 done, 1001 daemon "
                                "stopping, 4008 fell behind (reconnect with since=SEQ)."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}, {}],
        "paths": paths,
        "components": {
            "schemas": _SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {f"E{s}": _json(_ref("Error"), d) for s, d in _ERRORS.items()}
            | {"E409": _json(_ref("Error"), _ERRORS[409])},
        },
    }

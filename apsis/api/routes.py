"""The HTTP routes of `/api/v1` (SPEC §1.6): jobs, runs, operations, control.

Every handler is wrapped by `endpoint(role)`: it checks the token's role and turns
refusals (unknown run, bad state, bad args) into JSON errors with their status.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import hashlib
import itertools
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..lib.timefmt import format_time, now, parse_duration
from ..model.job import Job
from ..model.states import State
from ..schedule.runs import job_runs
from .errors import ApiError, bad_request, describe, error_for
from .params import Query, check_run_id, json_body, parse_time_param

if TYPE_CHECKING:
    from .app import Api

Handler = Callable[["Api", Request], Awaitable[Response]]

MAX_PAGE = 10_000  # runs per page of GET /runs
MAX_PAGES = 1000  # pages per answer of GET /runs?pages=N
JSON_LINES = "application/jsonl"
MAX_COUNT = 10_000  # runs per POST /runs
MAX_SCHEDULE = 10_000  # expected runs per GET /jobs/{id}/schedule
ADHOC_PREFIX = "adhoc/"
SCHEDULE_WINDOW = dt.timedelta(days=3660)  # GET /jobs/{id}/schedule without `to`


def endpoint(role: str) -> Callable[[Handler], Callable[[Request], Awaitable[Response]]]:
    """Checks the role, then runs the handler; known refusals become 4xx JSON errors."""

    def wrap(fn: Handler) -> Callable[[Request], Awaitable[Response]]:
        @functools.wraps(fn)
        async def handler(request: Request) -> Response:
            api: Api = request.app.state.api
            try:
                api.auth.check(request, role)
                return await fn(api, request)
            except Exception as exc:
                err = error_for(exc, request)
                if err is None:
                    raise
                return err.response()

        return handler

    return wrap


def run_out(jso: dict[str, Any]) -> dict[str, Any]:
    """A run as the API shows it: the engine's bookkeeping (`meta`, the job copy) left out."""
    return {k: v for k, v in jso.items() if k not in ("job", "meta")}


# -- liveness and jobs -------------------------------------------------------------------


@endpoint("read")
async def alive(api: Api, request: Request) -> Response:
    from .. import __version__

    Query(request, ())
    service = api.service
    problem = await service.readable()
    if problem is not None:  # SPEC §1.10: alive means the daemon can use its database
        raise ApiError(503, "store_unavailable", problem)
    return JSONResponse({"status": "ok", "version": __version__,
                         "started_at": format_time(service.started_at),
                         "seq": service.last_seq, **service.role()})


@endpoint("read")
async def list_jobs(api: Api, request: Request) -> Response:
    labels = Query(request, ("label",)).many("label")
    jobs = api.service.jobs()
    if labels:
        jobs = [j for j in jobs if set(labels) <= set(j.labels)]
    return JSONResponse({"jobs": [j.to_jso() for j in jobs]})


@endpoint("read")
async def get_job(api: Api, request: Request) -> Response:
    """`/jobs/{id}` and `/jobs/{id}/schedule`: one path pattern, since job ids hold slashes.

    An exact job id wins, so a job named `x/schedule` stays reachable; ad hoc jobs have a
    schedule too (none), and when neither is a job the 404 names the job of the schedule.
    """
    from ..engine.errors import NotFound

    job_id = request.path_params["job_id"]
    service = api.service
    if job_id.endswith("/schedule") and not service.has_job(job_id):
        try:
            job = await service.job(job_id)  # an ad hoc job named x/schedule
        except NotFound:
            return await _job_schedule(api, request,
                                       await service.job(job_id[: -len("/schedule")]))
    else:
        job = await service.job(job_id)  # an unknown job is 404, whatever its query says
    Query(request, ())
    # The file's text only here: lists and events carry the parsed job alone.
    return JSONResponse({**job.to_jso(), "source": job.source})


async def _job_schedule(api: Api, request: Request, job: Job) -> Response:
    q = Query(request, ("from", "to", "limit"))
    start = q.time("from") or now()
    # Without `to`, `limit` bounds the answer; the window still ends, so a schedule
    # whose calendar never admits a day cannot keep a thread busy forever.
    stop = q.time("to") or _plus(start, SCHEDULE_WINDOW)
    limit = q.int("limit", 100, 1, MAX_SCHEDULE)
    assert limit is not None
    if stop < start:
        raise bad_request("to must not be before from", "bad_time")
    runs = await asyncio.to_thread(expected_runs, job, start, stop, limit)
    return JSONResponse({"job_id": job.job_id, "from": format_time(start),
                         "to": format_time(stop), "runs": runs})


def _plus(when: dt.datetime, delta: dt.timedelta) -> dt.datetime:
    try:
        return when + delta
    except OverflowError:
        return dt.datetime.max.replace(tzinfo=dt.UTC)


def expected_runs(job: Job, start: dt.datetime, stop: dt.datetime,
                  limit: int) -> list[dict[str, Any]]:
    """The runs the job's enabled schedules ask for in [start, stop), in time order."""
    return [run.to_jso() for run in itertools.islice(job_runs(job, start, stop), limit)]


# -- runs ----------------------------------------------------------------------------------


@endpoint("read")
async def list_runs(api: Api, request: Request) -> Response:
    q = Query(request, ("job_id", "state", "since", "until", "label", "limit", "cursor", "summary",
                        "pages"), ("arg.",))
    states = []
    for text in q.many("state"):
        try:
            states.append(State(text).value)
        except ValueError:
            names = ", ".join(s.value for s in State)
            raise bad_request(f"unknown state {text!r}; states are: {names}", "bad_state_name") from None
    args = {}
    for name, value in q.items():
        if name.startswith("arg."):
            if not name[4:]:
                raise bad_request("arg filters look like arg.NAME=VALUE", "bad_param")
            args[name[4:]] = value
    jobs = q.many("job_id")
    filters = dict(job_id=jobs[0] if len(jobs) == 1 else jobs or None, states=states or None, since=q.time("since"),
                   until=q.time("until"), labels=q.many("label") or None, args=args or None,
                   limit=q.int("limit", 100, 1, MAX_PAGE), cursor=q.one("cursor"))
    summary = q.bool("summary")
    pages = q.int("pages", None, 1, MAX_PAGES)
    # The first page before any byte is sent: a bad cursor is still a 400.
    first, cursor = await _runs_page(api, filters, summary)
    if pages is None:
        return Response(first, media_type="application/json")
    return StreamingResponse(_more_pages(api, filters, summary, first, cursor, pages - 1),
                             media_type=JSON_LINES)


async def _runs_page(api: Api, filters: dict[str, Any], summary: bool) -> tuple[str, str | None]:
    """One page of GET /runs as its JSON text, and the cursor of the next."""
    if summary:
        # Summaries come as the store's JSON texts: joined, never parsed and re-encoded.
        summaries = await api.service.query_run_summaries(**filters)
        tail = json.dumps({"seq": summaries.seq, "cursor": summaries.cursor})
        return f'{{"runs":[{",".join(summaries.runs)}],{tail[1:]}', summaries.cursor
    page = await api.service.query_runs(**filters)
    return json.dumps({"runs": [run_out(r) for r in page.runs], "seq": page.seq,
                       "cursor": page.cursor}, ensure_ascii=False, allow_nan=False,
                      separators=(",", ":")), page.cursor  # as JSONResponse renders


async def _more_pages(api: Api, filters: dict[str, Any], summary: bool, first: str,
                      cursor: str | None, more: int) -> AsyncIterator[str]:
    """`pages=N`: the first page, then up to `more` pages, one JSON document a line, each
    read in its own snapshot (with its own seq) as a client paging by cursor would."""
    yield first + "\n"
    while cursor is not None and more > 0:
        text, cursor = await _runs_page(api, {**filters, "cursor": cursor}, summary)
        more -= 1
        yield text + "\n"


async def runs_collection(request: Request) -> Response:
    """GET and POST /runs share one route, so a 405 lists both in its Allow header."""
    return await (create_runs if request.method == "POST" else list_runs)(request)


@endpoint("operate")
async def create_runs(api: Api, request: Request) -> Response:
    """New runs of a job (operate) or of an inline, ad hoc job (admin); 201 once committed."""
    Query(request, ())
    body = await json_body(request)
    unknown = sorted(set(body) - {"job_id", "job", "args", "times", "count"})
    if unknown:
        raise bad_request(f"unknown key(s) in the body: {', '.join(unknown)} "
                          "(it takes job_id or job, args, times, count)", "bad_body")
    if ("job_id" in body) == ("job" in body):
        raise bad_request("give either job_id (a job of the jobs directory) or job (an inline job)",
                          "bad_body")
    args = _args_of(body.get("args"))
    when, stop = _times_of(body.get("times"))
    count = body.get("count", 1)
    if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_COUNT:
        raise bad_request(f"count must be an integer from 1 to {MAX_COUNT}, not {count!r}", "bad_body")
    service = api.service
    if "job_id" in body:
        if not isinstance(body["job_id"], str):
            raise bad_request(f"job_id must be a string, not {describe(body['job_id'])}", "bad_body")
        job = await service.job(body["job_id"])
    else:
        api.auth.check(request, "admin")
        job = _inline_job(api, body["job"])
    runs = await service.create_runs(job, args, times=[when] * count, stop=stop)
    return JSONResponse({"runs": [run_out(r.to_jso()) for r in runs]}, status_code=201)


def _args_of(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(f"args must be an object of strings, not {describe(value)}", "bad_body")
    args = {}
    for name, arg in value.items():
        if not isinstance(arg, str):
            raise bad_request(f"arg {name!r} must be a string, not {describe(arg)}", "bad_body")
        args[name] = arg
    return args


def _times_of(value: Any) -> tuple[dt.datetime, dt.datetime | None]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise bad_request(f"times must be an object {{schedule, stop}}, not {describe(value)}",
                          "bad_body")
    unknown = sorted(set(value) - {"schedule", "stop"})
    if unknown:
        raise bad_request(f"unknown key(s) in times: {', '.join(unknown)} (it takes schedule, stop)",
                          "bad_body")
    schedule = value.get("schedule")
    when = now() if schedule is None else parse_time_param("times.schedule", schedule)
    stop = value.get("stop")
    stop_time = None if stop is None else parse_time_param("times.stop", stop)
    if stop_time is not None and stop_time <= when:
        raise bad_request("times.stop must be after times.schedule", "bad_time")
    return when, stop_time


def _inline_job(api: Api, jso: Any) -> Job:
    """An ad hoc job: labelled `ad-hoc`, marked `ad_hoc`, id `adhoc/<hash of its JSON>`
    unless it names one (which must not be a job of the jobs directory)."""
    if not isinstance(jso, dict):
        raise bad_request(f"job must be an object (a job file's content), not {describe(jso)}",
                          "bad_body")
    jso = dict(jso)
    job_id = jso.pop("job_id", None)
    if job_id is None:
        digest = hashlib.sha256(json.dumps(jso, sort_keys=True, default=str).encode()).hexdigest()
        job_id = ADHOC_PREFIX + digest[:12]
    elif not isinstance(job_id, str) or not job_id.strip() or any(ord(c) < 32 for c in job_id):
        raise bad_request("job.job_id must be a non-empty string", "bad_body")
    elif any(not part or part.startswith(".") for part in job_id.split("/")):
        # Job ids are paths inside the jobs directory: none escapes it or names a dot file.
        raise bad_request(f"job.job_id {job_id!r} is not a job id: no leading '/', no empty "
                          "or '.'-led parts such as '..'", "bad_body")
    if api.service.has_job(job_id):
        raise ApiError(409, "job_exists",
                       f"job {job_id!r} is a job of the jobs directory; an inline job needs another id")
    metadata = jso.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise bad_request(f"job.metadata must be an object, not {describe(metadata)}", "bad_body")
    labels = metadata.get("labels", [])
    labels = [labels] if isinstance(labels, str) else labels
    if not isinstance(labels, list):
        raise bad_request("job.metadata.labels must be a string or a list of strings", "bad_body")
    metadata = {**metadata, "labels": list(labels) + ([] if "ad-hoc" in labels else ["ad-hoc"])}
    jso["metadata"] = metadata
    jso["ad_hoc"] = True
    return api.service.inline_job(jso, job_id)


@endpoint("read")
async def get_run(api: Api, request: Request) -> Response:
    Query(request, ())
    return JSONResponse(run_out(await _run_jso(api, request.path_params["run_id"])))


async def _run_jso(api: Api, run_id: str) -> dict[str, Any]:
    check_run_id(run_id)
    jso = await api.service.get_run(run_id)
    if jso is None:
        raise ApiError(404, "unknown_run", f"no run {run_id}")
    return jso


@endpoint("read")
async def run_log(api: Api, request: Request) -> Response:
    Query(request, ())
    run_id = request.path_params["run_id"]
    await _run_jso(api, run_id)
    return JSONResponse({"run_id": run_id, "log": await api.service.run_log(run_id)})


@endpoint("read")
async def run_outputs(api: Api, request: Request) -> Response:
    Query(request, ())
    run_id = request.path_params["run_id"]
    await _run_jso(api, run_id)
    outputs = await api.service.list_outputs(run_id)
    return JSONResponse({"run_id": run_id, "outputs": [_output_info(o) for o in outputs]})


def _output_info(info: dict[str, Any]) -> dict[str, Any]:
    return {"output_id": info["output_id"], "length": info.get("length", 0),
            "content_type": info.get("content_type") or "application/octet-stream",
            **({"original_length": info["original_length"]} if "original_length" in info else {})}


@endpoint("read")
async def output_range(api: Api, request: Request) -> Response:
    """Raw bytes [start, end) of an output, clamped to what exists, streamed; a running
    program's capped at `output.max_bytes` (see output.py)."""
    from .output import output_response

    q = Query(request, ("start", "end"))
    start = q.int("start", 0, 0)
    end = q.int("end", None, 0)
    run_id, output_id = request.path_params["run_id"], request.path_params["output_id"]
    await _run_jso(api, run_id)
    assert start is not None
    if end is not None and end < start:
        raise bad_request("end must not be before start", "bad_param")
    response = await output_response(api, run_id, output_id, start, end)
    if response is None:
        raise ApiError(404, "unknown_output", f"run {run_id} has no output {output_id!r}")
    return response


# -- operations ---------------------------------------------------------------------------


def _operation(name: str) -> Callable[[Request], Awaitable[Response]]:
    @endpoint("operate")
    async def op(api: Api, request: Request) -> Response:
        Query(request, ())
        run_id = check_run_id(request.path_params["run_id"])
        run = await getattr(api.service, name)(run_id)
        return JSONResponse(run_out(run.to_jso()))

    op.__name__ = f"op_{name}"
    return op


op_skip = _operation("skip")
op_start = _operation("start")
op_stop = _operation("stop")
op_rerun = _operation("rerun")


@endpoint("operate")
async def op_signal(api: Api, request: Request) -> Response:
    Query(request, ())
    run_id = check_run_id(request.path_params["run_id"])
    run = await api.service.signal(run_id, request.path_params["signal"])
    return JSONResponse(run_out(run.to_jso()))


@endpoint("operate")
async def op_mark(api: Api, request: Request) -> Response:
    Query(request, ())
    run_id = check_run_id(request.path_params["run_id"])
    state = request.path_params["state"]
    if state not in {s.value for s in State}:
        names = ", ".join(s.value for s in State)
        raise ApiError(422, "bad_state_name", f"unknown state {state!r}; states are: {names}")
    run = await api.service.mark(run_id, State(state))
    return JSONResponse(run_out(run.to_jso()))


# -- control ------------------------------------------------------------------------------


@endpoint("admin")
async def control_reload(api: Api, request: Request) -> Response:
    dry_run = Query(request, ("dry_run",)).bool("dry_run")
    result = await api.service.reload_jobs(dry_run=dry_run)
    return JSONResponse({**result, "dry_run": dry_run})


@endpoint("admin")
async def control_shutdown(api: Api, request: Request) -> Response:
    restart = Query(request, ("restart",)).bool("restart")
    api.service.request_shutdown(restart=restart)
    return JSONResponse({"status": "stopping", "restart": restart}, status_code=202)


@endpoint("admin")
async def control_archive(api: Api, request: Request) -> Response:
    raw = Query(request, ("older_than",)).one("older_than")
    if raw is None:
        raise bad_request("older_than is required: a duration such as 90d", "bad_param")
    try:
        age = parse_duration(raw)
    except ValueError as exc:
        raise bad_request(f"older_than: {exc}", "bad_param") from None
    try:
        cut = now() - dt.timedelta(seconds=age)
    except OverflowError:
        raise bad_request(f"older_than: {raw!r} is too long", "bad_param") from None
    moved = await api.service.archive_runs(cut)
    return JSONResponse({"moved": moved, "before": format_time(cut),
                         "archive": str(api.service.archive_path())})


@endpoint("read")
async def control_stats(api: Api, request: Request) -> Response:
    from .. import __version__

    Query(request, ())
    service = api.service
    commits = service.commit_quantiles()
    return JSONResponse({
        "version": __version__,
        "started_at": format_time(service.started_at),
        "uptime_seconds": round((now() - service.started_at).total_seconds(), 3),
        **service.counts(),
        "db_commit_seconds": {"count": service.commit_count, "p50": commits.get(0.5),
                              "p99": commits.get(0.99), "max": commits.get(1.0)},
        "store": await service.store_stats(),
    })


async def websocket_only(request: Request) -> Response:
    """A plain GET on a websocket path: say how to use it instead of a bare 404."""
    return JSONResponse({"error": {"code": "upgrade_required",
                                   "message": f"{request.url.path} is a websocket: connect with ws://"}},
                        status_code=426, headers={"Upgrade": "websocket", "Connection": "Upgrade"})

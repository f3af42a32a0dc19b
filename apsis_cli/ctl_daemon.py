"""`apsisctl reload | sanity | shutdown`: asking a running daemon, over its API."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import click

from apsis import present

from . import fmt
from .connect import call
from .exitcodes import ExitStatus
from .parse import parse_api_time, parse_duration, parse_time

if TYPE_CHECKING:
    from apsis.client import Client

UTC = dt.UTC


def _ids(items: Any) -> list[str]:
    if not items:
        return []
    if isinstance(items, dict):
        return sorted(items)
    return [i if isinstance(i, str) else str(i.get("job_id", i)) for i in items]


def run_reload(obj: dict[str, Any], dry_run: bool, as_json: bool) -> int:
    result = call(obj, lambda client: client.reload(dry_run=dry_run))
    if as_json:
        click.echo(fmt.dumps(result))
        return int(ExitStatus.SUCCESS)
    changes = {kind: _ids(result.get(kind)) for kind in ("added", "changed", "removed")}
    for kind, ids in changes.items():
        for job_id in ids:
            click.echo(f"{kind:<8} {job_id}")
    errors = result.get("errors") or []
    for error in errors:
        click.echo(f"error: {error if isinstance(error, str) else error.get('message', error)}",
                   err=True)
    total = sum(len(v) for v in changes.values())
    verb = "would change" if dry_run else "changed"
    click.echo(f"{total} job(s) {verb}: " + ", ".join(f"{len(v)} {k}" for k, v in changes.items()),
               err=True)
    return int(ExitStatus.FAILURE if errors else ExitStatus.SUCCESS)


def run_shutdown(obj: dict[str, Any], restart: bool) -> int:
    call(obj, lambda client: client.shutdown(restart=restart))
    click.echo("restarting" if restart else "shutting down", err=True)
    return int(ExitStatus.SUCCESS)


def _has_schedule(job: dict[str, Any]) -> bool:
    schedule = job.get("schedule")
    items = schedule if isinstance(schedule, list) else [schedule] if schedule else []
    return any(not isinstance(s, dict) or s.get("enabled", True) for s in items)


async def find_problems(client: Client, late: float, since: dt.datetime,
                        now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Everything `sanity` reports, as {kind, run_id?, job_id, message} records."""
    now = now or dt.datetime.now(UTC)
    late_delta = dt.timedelta(seconds=late)
    problems: list[dict[str, Any]] = []
    jobs = {j["job_id"]: j for j in await client.jobs()}

    scheduled_jobs: set[str] = set()
    async for run in client.iter_runs(states=["scheduled"]):
        scheduled_jobs.add(run.get("job_id") or "")
        times = run.get("times") or {}
        # `due` is later than `schedule` by the schedule's jitter: held back, not late.
        when = parse_api_time(times.get("due") or times.get("schedule"))
        if when and now - when > late_delta:
            problems.append({"kind": "late_scheduled", "run_id": run["run_id"],
                             "job_id": run.get("job_id"),
                             "message": f"{'due' if times.get('due') else 'scheduled'} "
                                        f"{present.format_elapsed((now - when).total_seconds())} "
                                        "ago and not started"})

    for job_id, job in sorted(jobs.items()):
        if job_id in scheduled_jobs or not _has_schedule(job):
            continue
        upcoming = await client.job_schedule(job_id, start=_iso(now),
                                             stop=_iso(now + dt.timedelta(days=1)), limit=1)
        if upcoming:
            problems.append({"kind": "unscheduled", "job_id": job_id,
                             "message": "has a schedule due within a day but no scheduled run "
                                        f"(next: {upcoming[0].get('time')})"})

    async for run in client.iter_runs(states=["starting", "running", "stopping"]):
        job_id = run.get("job_id")
        times = run.get("times") or {}
        if job_id not in jobs and not run.get("ad_hoc"):
            problems.append({"kind": "orphaned", "run_id": run["run_id"], "job_id": job_id,
                             "message": f"{run.get('state')} but its job no longer exists"})
        started = parse_api_time(times.get("starting"))
        if run.get("state") == "starting" and started and now - started > late_delta:
            problems.append({"kind": "orphaned", "run_id": run["run_id"], "job_id": job_id,
                             "message": "stuck starting for "
                                        f"{present.format_elapsed((now - started).total_seconds())}"})

    problems += await _waiting_on_nothing(client, jobs)

    async for run in client.iter_runs(since=_iso(since), states=["running", "stopping", "success",
                                                                  "failure", "error"]):
        times = run.get("times") or {}
        if "waiting" in times:
            continue  # it waited on conditions: starting later is what it was told to do
        sched, start = parse_api_time(times.get("schedule")), parse_api_time(times.get("starting"))
        if sched and start and start - sched > late_delta:
            problems.append({"kind": "started_late", "run_id": run["run_id"],
                             "job_id": run.get("job_id"),
                             "message": "started "
                                        f"{present.format_elapsed((start - sched).total_seconds())} late"})
    return problems


async def _waiting_on_nothing(client: Client, jobs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Waiting runs whose dependency has no run that is not finished (none scheduled,
    waiting or running): nothing will ever meet it unless someone creates that run."""
    problems: list[dict[str, Any]] = []
    async for run in client.iter_runs(states=["waiting"]):
        for cond in run.get("conditions") or []:
            if cond.get("type") != "dependency" or not cond.get("job_id"):
                continue
            dep = cond["job_id"]
            # As the daemon binds it: args not given are the run's args of the dependency's params.
            args = {p: v for p, v in (run.get("args") or {}).items()
                    if p in (jobs.get(dep, {}).get("params") or [])}
            args.update(cond.get("args") or {})
            unfinished = sorted(set(present.STATES) - present.FINISHED_STATES)
            found = await client.runs(job_id=dep, args=args, states=unfinished, limit=2)
            others = [r for r in found.get("runs", []) if r.get("run_id") != run["run_id"]]
            if not others:
                what = " ".join([dep, *(f"{k}={v}" for k, v in sorted(args.items()))])
                problems.append({"kind": "waiting_on_none", "run_id": run["run_id"],
                                 "job_id": run.get("job_id"),
                                 "message": f"waits for {what}, which has no run scheduled, "
                                            "waiting or running: create it (`apsis run`) "
                                            "or skip this run"})
    return problems


def _iso(value: dt.datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_sanity(obj: dict[str, Any], late: str, since: str, as_json: bool) -> int:
    late_s = parse_duration(late, "--late")
    since_t = parse_time(since, "--since")
    problems = call(obj, lambda client: find_problems(client, late_s, since_t))
    if as_json:
        click.echo(fmt.dumps(problems))
    else:
        for p in problems:
            who = p.get("run_id") or ""
            click.echo(f"{p['kind']:<15} {who:<8} {p.get('job_id') or ''}: {p['message']}")
        click.echo(f"{len(problems)} problem(s)" if problems else "all sane", err=True)
    return int(ExitStatus.FAILURE if problems else ExitStatus.SUCCESS)

"""Whole-directory checks beyond parsing: templates, bindings, dependencies, cycles.

What a user would otherwise learn at 3 a.m. is found here: every template is
rendered for every schedule's args, every param is bound, and every dependency
or `schedule` action points at a job that exists with matching params.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from collections.abc import Iterator

from .action import ScheduleAction
from .cond import DependencyCondition, MaxRunningCondition
from .errors import Diagnostics, Location
from .jobs_dir import JobsDir
from .lib.timefmt import UTC
from .model.job import Job, bind_args, missing_params
from .program import ShellProgram, bind_program
from .schedule.runs import job_runs

# Templates are rendered with the args of each schedule's first run after this.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def check_jobs_dir(jobs_dir: JobsDir, *, now: dt.datetime | None = None) -> Diagnostics:
    """Every problem of the loaded jobs, beyond those found while loading."""
    diags = Diagnostics()
    now = now or dt.datetime.now(UTC)
    for job in jobs_dir.jobs.values():
        _check_job(jobs_dir, job, now, diags)
    _check_cycles(jobs_dir, diags)
    return diags


def sample_args(jobs_dir: JobsDir, job: Job, now: dt.datetime, diags: Diagnostics
                ) -> Iterator[tuple[str, dict[str, str]]]:
    """(what, args) pairs to render templates with: one per schedule, or the bare params."""
    if not job.schedules:
        yield from _unscheduled_args(jobs_dir, job, now)
        return
    for i, schedule in enumerate(job.schedules):
        loc = job.locs.get(f"schedule.{i}")
        try:
            first = next(iter(schedule.times(now)), None) or next(iter(schedule.times(_EPOCH)), None)
        except (ValueError, LookupError) as exc:
            diags.error(f"schedule: {exc}", loc)
            continue
        if first is None:
            continue
        for name in sorted(set(schedule.args) - set(job.params)):
            diags.warning(f"schedule arg {name!r} is not a param of this job and is ignored", loc)
        args = bind_args(job.params, first.args)
        missing = missing_params(job.params, args)
        if missing:
            provided = ", ".join(sorted(first.args)) or "nothing"
            diags.error(
                f"schedule does not bind param{'s' if len(missing) > 1 else ''} "
                f"{', '.join(missing)} (it provides {provided}); add them to the schedule's args",
                loc,
            )
            continue
        yield f" for the args of schedule {i + 1}", args


# How many sets of args an unscheduled job's templates are rendered with, at most.
_MAX_SAMPLES = 20


def _unscheduled_args(jobs_dir: JobsDir, job: Job, now: dt.datetime
                      ) -> Iterator[tuple[str, dict[str, str]]]:
    """Args for a job no schedule binds (it runs from the CLI, dependencies, actions).

    A param named like a schedule arg gets a value of that form (`date` a date, so that
    `calendar.shift(date, -1)` renders); other params a placeholder.  A param with an
    `expand` table takes each of its values in turn: a run of `{country: GB}` gets the
    `tz` and `calendar` of GB, and the templates may use them.
    """
    from .lib.timefmt import format_time
    from .template import merge_expand

    known = {"date": now.date().isoformat(), "time": format_time(now.replace(microsecond=0)),
             "daytime": now.strftime("%H:%M:%S")}
    base = {p: known.get(p, f"<{p}>") for p in job.params}
    expand = merge_expand(jobs_dir.config.expand, job.expand)
    tables = {p: list(expand[p]) for p in job.params if expand.get(p)}
    if not tables:
        yield "", base
        return
    first = {**base, **{p: values[0] for p, values in tables.items()}}
    samples = [first]
    for param, values in tables.items():
        samples += [{**first, param: value} for value in values[1:]]
    for args in samples[:_MAX_SAMPLES]:
        yield f" for args {args}", args


def _check_job(jobs_dir: JobsDir, job: Job, now: dt.datetime, diags: Diagnostics) -> None:
    from .template import unquoted_args_in_shell

    if isinstance(job.program, ShellProgram):
        for name in unquoted_args_in_shell(job.program.command, job.params):
            diags.warning(f"arg {name!r} is placed into a shell command unquoted; "
                          f"write {{{{ {name}|shquote }}}}", job.locs.get("program"))

    if getattr(job.program, "user", None) and not getattr(job.program, "host", None):
        diags.warning("program 'user' is only used with 'host' (a remote run); "
                      "this program runs locally as the daemon's user", job.locs.get("program"))

    seen: set[tuple[str, str]] = set()  # one report per template, not one per schedule
    for what, args in sample_args(jobs_dir, job, now, diags):
        try:
            targs = jobs_dir.template_args(job, args, run_id="r0")
        except (ValueError, LookupError) as exc:
            diags.error(f"expanding args {args}: {exc}", job.locs.get("program"))
            continue
        render = _Renderer(targs, what, seen, diags)
        program = render(job.program.to_jso(), "program", job.locs.get("program"))
        if program is not None:  # templated durations and signals, as this run would bind them
            try:
                bind_program(program)
            except ValueError as exc:
                if ("program", str(exc)) not in seen:
                    seen.add(("program", str(exc)))
                    diags.error(f"{exc}{what}", job.locs.get("program"))
        for i, cond in enumerate(job.conditions):
            loc = job.locs.get(f"condition.{i}")
            if isinstance(cond, DependencyCondition):
                dep_args = render(cond.args, "dependency args", loc)
                if dep_args is not None:
                    _check_target(jobs_dir, job, cond.job_id, dep_args, args, "dependency", loc, diags)
            elif isinstance(cond, MaxRunningCondition):
                count = render(cond.count, "max_running count", loc)
                if count is not None and not str(count).strip().isdigit():
                    diags.error(f"max_running count must be a whole number, got {count!r}", loc)
        for i, action in enumerate(job.actions):
            loc = job.locs.get(f"action.{i}")
            rendered = render(action.to_jso(), f"{action.TYPE} action", loc)
            if isinstance(action, ScheduleAction) and rendered is not None:
                _check_target(jobs_dir, job, action.job_id, rendered["args"], args,
                              "schedule action", loc, diags)


class _Renderer:
    """Renders templates with one schedule's args, reporting each failure once."""

    def __init__(self, targs: dict[str, Any], what: str, seen: set[tuple[str, str]],
                 diags: Diagnostics) -> None:
        self.targs, self.what, self.seen, self.diags = targs, what, seen, diags

    def __call__(self, value: Any, where: str, loc: Location | None) -> Any:
        from .template import TemplateError, render_value

        try:
            return render_value(value, self.targs)
        except TemplateError as exc:
            if (where, str(exc)) not in self.seen:
                self.seen.add((where, str(exc)))
                self.diags.error(f"{where}: {exc}{self.what}", loc)
            return None


def _check_target(jobs_dir: JobsDir, job: Job, target_id: str, given: dict[str, str],
                  run_args: dict[str, str], what: str, loc: Location | None,
                  diags: Diagnostics) -> None:
    """A dependency or scheduled job exists and every one of its params gets a value."""
    target = jobs_dir.jobs.get(target_id)
    if target is None:
        if target_id in jobs_dir.broken:
            return  # its own errors are reported at its file
        from .lib.strict import did_you_mean

        diags.error(f"{what} on unknown job {target_id!r}{did_you_mean(target_id, list(jobs_dir.jobs))}", loc)
        return
    extra = sorted(set(given) - set(target.params))
    if extra:
        diags.error(f"{what} on {target_id!r} gives arg{'s' if len(extra) > 1 else ''} "
                    f"{', '.join(extra)} that it does not take (its params: "
                    f"{', '.join(target.params) or 'none'})", loc)
    # Args not given are taken from this run's args of the same name.
    missing = missing_params(target.params, {**run_args, **given})
    if missing:
        diags.error(f"{what} on {target_id!r} does not bind its param"
                    f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}; give "
                    f"{'them' if len(missing) > 1 else 'it'} in args", loc)


def _check_cycles(jobs_dir: JobsDir, diags: Diagnostics) -> None:
    """Dependency cycles would make every run of them wait forever."""
    graph: dict[str, list[tuple[str, Location | None]]] = {
        # A job on itself (yesterday's run, say) is another instance, not a cycle.
        job.job_id: [(c.job_id, job.locs.get(f"condition.{i}"))
                     for i, c in enumerate(job.conditions)
                     if isinstance(c, DependencyCondition) and c.job_id != job.job_id]
        for job in jobs_dir.jobs.values()
    }
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    reported: set[frozenset[str]] = set()
    for start in sorted(graph):
        if state.get(start):
            continue
        stack: list[tuple[str, Iterator]] = [(start, iter(graph[start]))]
        path = [start]
        state[start] = 1
        while stack:
            node, edges = stack[-1]
            for target, loc in edges:
                if target not in graph:
                    continue
                if state.get(target) == 1:
                    cycle = path[path.index(target):] + [target]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        diags.error(f"dependency cycle: {' → '.join(cycle)}", loc)
                elif not state.get(target):
                    state[target] = 1
                    path.append(target)
                    stack.append((target, iter(graph[target])))
                    break
            else:
                state[node] = 2
                path.pop()
                stack.pop()


def list_runs(jobs_dir: JobsDir, start: dt.datetime, stop: dt.datetime) -> list[dict[str, Any]]:
    """Every run the schedules would create in [start, stop), sorted by time."""
    from .lib.timefmt import format_time

    # A DST-skipped time (`dst_gap: skip`) creates no run to list.
    runs = [run for job in jobs_dir.jobs.values() for run in job_runs(job, start, stop)
            if not run.skip_reason]
    runs.sort(key=lambda r: (r.time, r.job.job_id))
    return [{"job_id": r.job.job_id, "args": r.args, "time": format_time(r.time)} for r in runs]

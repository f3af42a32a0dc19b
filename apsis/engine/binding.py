"""Binding a job to one run: templates rendered once, every family's part checked.

What a run will execute, wait for and fire is fixed when the run is created (the
rendered JSON is stored with it); a value that only turns out wrong once rendered
(a templated duration that is not one) makes the run an error, saying which.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..action import bind_action
from ..cond import BindContext, BoundCondition, bind_condition
from ..model.job import Job, shared
from ..model.run import Run, RunMeta
from ..program import bind_program
from ..template import TemplateError, render_value, same_for_all


@dataclass(slots=True)
class NewRun:
    """A run about to be recorded, and why it cannot be scheduled, if it cannot."""

    run: Run
    error: str | None = None
    skip_reason: str | None = None


# What the runs of a job with the same args render alike, by (job id, args): program,
# conditions and actions, bound (None: they differ by run, rendered for each).
Rendered = tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]
RenderCache = dict[tuple[str, tuple[tuple[str, str], ...]], Rendered | None]


def bind_run(job: Job, args: dict[str, str], run_id: str, when: dt.datetime, *,
             job_jso: dict[str, Any],
             template_args: Callable[[Job, dict[str, str], str], dict[str, Any]],
             params_of: Callable[[str], list[str] | None],
             stop: dt.datetime | None = None, rerun_of: str | None = None, attempt: int = 1,
             expected: bool = False, meta: RunMeta | None = None,
             cache: RenderCache | None = None) -> NewRun:
    # Runs share equal values (model.job.shared): a day of runs in memory.
    # `job_jso` is `job.to_jso()`, made once for the runs bound together: the store
    # encodes and hashes it once for them all (it knows it by identity).
    # `cache`, given for runs bound together of jobs that do not change meanwhile (a
    # window's part), renders what does not depend on the run once per job and args:
    # a day of 100 000 runs of 10 000 jobs rendered each job's templates ten times.
    run = Run(run_id=run_id, job_id=job.job_id, args=shared(dict(args)),
              labels=shared(job.labels), rerun_of=rerun_of, attempt=attempt,
              ad_hoc=job.ad_hoc, expected=expected, job=job_jso,
              meta=shared_meta(meta or RunMeta()))
    run.set_time("schedule", when)
    if stop is not None:
        run.set_time("stop", stop)
    key = (job.job_id, tuple(sorted(args.items())))
    rendered = None if cache is None else cache.get(key)
    try:
        if rendered is not None:
            run.program, run.conditions, run.actions = rendered
            conditions_of(run, params_of)
            return NewRun(run)
        targs = template_args(job, args, run_id)
        parts = (job.program.to_jso(), [c.to_jso() for c in job.conditions],
                 [a.to_jso() for a in job.actions])
        run.program = shared(render_value(parts[0], targs))
        run.conditions = shared(render_value(parts[1], targs))
        run.actions = shared(render_value(parts[2], targs))
        bind_program(run.program)
        conditions_of(run, params_of)
        for action in run.actions:
            bind_action(action)
        if cache is not None and key not in cache:
            cache[key] = ((run.program, run.conditions, run.actions)
                          if same_for_all(list(parts), targs, ("run_id",)) else None)
    except (TemplateError, ValueError, LookupError) as exc:
        return NewRun(run, error=f"cannot bind job {job.job_id!r}: {exc}")
    return NewRun(run)


def share_with_job(run: Run, job: Job) -> None:
    """A restored run takes the values other runs already hold (model.job.shared), as a
    newly bound one does: a day of runs read back at start-up, each with its own copy
    of the same program, conditions and actions, was most of a restarted daemon's memory."""
    run.job_id = job.job_id
    run.meta = shared_meta(run.meta)
    run.args = shared(run.args)
    run.labels = shared(run.labels)
    run.program = shared(run.program)
    run.conditions = shared(run.conditions)
    run.actions = shared(run.actions)


def shared_meta(meta: RunMeta) -> RunMeta:
    """The same bookkeeping as the job's other runs, if it is: the runs of one schedule
    differ only by jitter (and, once started, their process), so a day of them holds a
    few RunMeta and schedule keys, not one each. Jittered ones stay apart: they would
    crowd the table of shared values."""
    return shared(meta) if not meta.jitter and meta.proc is None else meta


def conditions_of(run: Run, params_of: Callable[[str], list[str] | None]) -> list[BoundCondition]:
    """The run's conditions, bound; ValueError says which one cannot be."""
    ctx = BindContext(run.run_id, run.job_id, run.args, params_of)
    bound = []
    for jso in run.conditions:
        try:
            bound.append(bind_condition(jso, ctx))
        except NotImplementedError:
            raise ValueError(f"condition type {jso.get('type')!r} cannot be checked") from None
    return bound

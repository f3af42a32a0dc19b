"""Whole-directory checks beyond parsing: templates, bindings, dependencies, cycles.

What a user would otherwise learn at 3 a.m. is found here: every template is
rendered for every schedule's args, every param is bound, and every dependency
or `schedule` action points at a job that exists with matching params.
"""

from __future__ import annotations

import datetime as dt
import gc
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .action import ScheduleAction
from .cond import DependencyCondition, MaxRunningCondition
from .errors import Diagnostic, Diagnostics, Location
from .jobs_dir import JobsDir, ProgressFn, load_files, open_jobs_dir
from .lib.strict import did_you_mean
from .lib.timefmt import UTC, format_time
from .model.job import Job, bind_args, missing_params
from .program import ShellProgram, bind_program
from .schedule.runs import job_runs
from .template import TemplateError, merge_expand, render, template_names, unquoted_args_in_shell

# Templates are rendered with the args of each schedule's first run after this.
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=UTC)


def check_jobs_dir(jobs_dir: JobsDir, *, now: dt.datetime | None = None) -> Diagnostics:
    """Every problem of the loaded jobs, beyond those found while loading.

    Jobs that failed to load are checked too, as far as they parsed (their templates,
    say), so that one pass reports every problem of a file.
    """
    diags = Diagnostics()
    checker = _Checker(jobs_dir, now or dt.datetime.now(UTC), diags)
    for job in [*jobs_dir.jobs.values(), *jobs_dir.partial.values()]:
        checker.check_job(job)
    check_cycles(dependency_graph(jobs_dir.jobs.values()), diags)
    return diags


# A job's dependencies on other jobs, with where each is written: what cycles are made of.
Graph = dict[str, list[tuple[str, Location | None]]]


def dependency_graph(jobs: Iterable[Job]) -> Graph:
    # A job on itself (yesterday's run, say) is another instance, not a cycle.
    return {job.job_id: [(c.job_id, job.locs.get(f"condition.{i}"))
                         for i, c in enumerate(job.conditions)
                         if isinstance(c, DependencyCondition) and c.job_id != job.job_id]
            for job in jobs}


# How many sets of args an unscheduled job's templates are rendered with, at most.
_MAX_SAMPLES = 20

# A problem found with one set of args: (what it is about, for reporting it once; its
# message; where).
_Problem = tuple[tuple[Any, ...], str, Location | None]


class _Checker:
    """Checks jobs one by one, remembering what many jobs share.

    Ten thousand generated jobs have a few hundred distinct schedules and a handful of
    distinct templates and args: each schedule's first run, each rendering and each
    bound program is worked out once per distinct input.
    """

    def __init__(self, jobs_dir: JobsDir, now: dt.datetime, diags: Diagnostics,
                 targets: Mapping[str, list[str]] | None = None,
                 broken: Collection[str] | None = None) -> None:
        """`targets` (job id → params) and `broken` are every job of the directory, for
        dependencies and `schedule` actions; by default, those of `jobs_dir`."""
        self.jobs_dir, self.now, self.diags = jobs_dir, now, diags
        self.targets = targets if targets is not None else {
            job_id: job.params for job_id, job in jobs_dir.jobs.items()}
        self.broken = broken if broken is not None else jobs_dir.broken
        self._first_runs: dict[str, Any] = {}
        # Worked out once per object: jobs of one pattern share their parts.
        self._first_of = _ById()
        self._names: dict[str, tuple[str, ...]] = {}
        self._renders: dict[tuple[Any, ...], Any] = {}
        self._bound: dict[str, str | None] = {}
        self._bound_of = _ById()
        self._unquoted: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._jsos = _ById()
        self._targs = _ById()
        self._templates = _ById()
        self._rendered: dict[tuple[int, str, tuple[str, ...]], Any] = {}

    # -- one job ---------------------------------------------------------------------

    def check_job(self, job: Job) -> None:
        diags = self.diags
        if isinstance(job.program, ShellProgram):
            key = (job.program.command, tuple(job.params))
            if key not in self._unquoted:
                self._unquoted[key] = unquoted_args_in_shell(*key)
            for name in self._unquoted[key]:
                diags.warning(f"arg {name!r} is placed into a shell command unquoted; "
                              f"write {{{{ {name}|shquote }}}}", _template_loc(job, "program.command"))

        seen: set[tuple[Any, ...]] = set()  # one report per problem, not one per schedule
        jsos = (self._jso(job.program), [self._jso(c) for c in job.conditions],
                [self._jso(a) for a in job.actions])
        for what, args, unknown in self.sample_args(job):
            problems = self._check_args(job, jsos, args, what)
            # An unscheduled job's params without a known form get placeholders: a
            # problem counts only if it stays with any plausible value (a date, a number).
            for filler in (self.now.date().isoformat(), "1"):
                if not (problems and unknown):
                    break
                others = self._check_args(job, jsos, {**args, **dict.fromkeys(unknown, filler)}, what)
                still = {(key[0], loc) for key, _, loc in others}
                problems = [p for p in problems if (p[0][0], p[2]) in still]
            for key, message, loc in problems:
                if key not in seen:
                    seen.add(key)
                    diags.error(message, loc)

    def sample_args(self, job: Job) -> Iterator[tuple[str, dict[str, str], tuple[str, ...]]]:
        """(what, args, params given placeholders) to render templates with: one per
        schedule, or sample args for an unscheduled job."""
        if not job.schedules:
            yield from self._unscheduled_args(job)
            return
        for i, schedule in enumerate(job.schedules):
            where = f"schedule.{i}"  # located only for a problem: most jobs have none
            try:
                first = self._first_run(schedule)
            except (ValueError, LookupError) as exc:
                self.diags.error(f"schedule: {exc}", job.locs.get(where))
                continue
            if first is None:
                continue
            for name in sorted(set(schedule.args) - set(job.params)):
                self.diags.warning(f"schedule arg {name!r} is not a param of this job and is ignored",
                                   job.locs.get(where))
            args = bind_args(job.params, first.args)
            missing = missing_params(job.params, args)
            if missing:
                provided = ", ".join(sorted(first.args)) or "nothing"
                self.diags.error(
                    f"schedule does not bind param{'s' if len(missing) > 1 else ''} "
                    f"{', '.join(missing)} (it provides {provided}); add them to the schedule's args",
                    job.locs.get(where),
                )
                continue
            yield f" for the args of schedule {i + 1}", args, ()

    def _first_run(self, schedule: Any) -> Any:
        """The schedule's first run from now (else from 1970), once per distinct schedule
        (and looked up once per schedule object: jobs share theirs)."""
        def first_run() -> Any:
            key = repr(schedule.to_jso())  # every key, in the type's own order
            if key not in self._first_runs:
                try:
                    first = (next(iter(schedule.times(self.now)), None)
                             or next(iter(schedule.times(_EPOCH)), None))
                except (ValueError, LookupError) as exc:
                    first = exc
                self._first_runs[key] = first
            return self._first_runs[key]

        first = self._first_of.get(schedule, (), first_run)
        if isinstance(first, Exception):
            raise first
        return first

    def _unscheduled_args(self, job: Job) -> Iterator[tuple[str, dict[str, str], tuple[str, ...]]]:
        """Args for a job no schedule binds (it runs from the CLI, dependencies, actions).

        A param named like a schedule arg gets a value of that form (`date` a date, so that
        `calendar.shift(date, -1)` renders); other params a placeholder.  A param with an
        `expand` table takes each of its values in turn: a run of `{country: GB}` gets the
        `tz` and `calendar` of GB, and the templates may use them.
        """
        now = self.now
        known = {"date": now.date().isoformat(), "time": format_time(now.replace(microsecond=0)),
                 "daytime": now.strftime("%H:%M:%S")}
        base = {p: known.get(p, f"<{p}>") for p in job.params}
        expand = merge_expand(self.jobs_dir.config.expand, job.expand)
        tables = {p: list(expand[p]) for p in job.params if expand.get(p)}
        unknown = tuple(p for p in job.params if p not in known and p not in tables)
        if not tables:
            yield "", base, unknown
            return
        first = {**base, **{p: values[0] for p, values in tables.items()}}
        samples = [first]
        for param, values in tables.items():
            samples += [{**first, param: value} for value in values[1:]]
        for args in samples[:_MAX_SAMPLES]:
            yield f" for args {args}", args, unknown

    def _check_args(self, job: Job, jsos: tuple[Any, list[Any], list[Any]],
                    args: dict[str, str], what: str) -> list[_Problem]:
        """The problems of the job's templates and targets with one set of args."""
        problems: list[_Problem] = []
        try:
            targs = self._template_args(job, args)
        except (ValueError, LookupError) as exc:
            return [(("expand", str(exc)), f"expanding args {args}: {exc}", job.locs.get("program"))]
        program_jso, cond_jsos, action_jsos = jsos
        program = self._render(job, program_jso, "program", "program", targs, what, problems)
        if program is not None:  # templated durations and signals, as this run would bind them
            error = self._bind(program)
            if error is not None:
                # "program timeout.duration: not a duration: ..." is about that field.
                field = error.partition(":")[0].removeprefix("program ")
                problems.append((("program", error), f"{error}{what}",
                                 _template_loc(job, f"program.{field}")))
        for i, (cond, jso) in enumerate(zip(job.conditions, cond_jsos)):
            if isinstance(cond, DependencyCondition):
                dep_args = self._render(job, jso.get("args", {}), f"condition.{i}.args",
                                        "dependency args", targs, what, problems)
                if dep_args is not None:
                    self._check_target(cond.job_id, dep_args, args, "dependency", job,
                                       f"condition.{i}", problems)
            elif isinstance(cond, MaxRunningCondition):
                count = self._render(job, jso.get("count"), f"condition.{i}.count",
                                     "max_running count", targs, what, problems)
                if count is not None and not str(count).strip().isdigit():
                    problems.append((("count", i), f"max_running count must be a whole number, "
                                     f"got {count!r}{what}", _template_loc(job, f"condition.{i}.count")))
        for i, (action, jso) in enumerate(zip(job.actions, action_jsos)):
            rendered = self._render(job, jso, f"action.{i}", f"{action.TYPE} action", targs, what, problems)
            if isinstance(action, ScheduleAction) and rendered is not None:
                self._check_target(action.job_id, rendered["args"], args, "schedule action", job,
                                   f"action.{i}", problems)
        return problems

    def _template_args(self, job: Job, args: dict[str, str]) -> dict[str, Any]:
        """What the job's templates see with `args`, worked out once per `expand` table
        and args (jobs share their tables): only `job_id` is the job's own."""
        found = self._targs.get(job.expand, tuple(args.items()),
                                lambda: self.jobs_dir.template_args(job, args, run_id="r0"))
        return {**found, "job_id": job.job_id}

    # -- rendering, once per distinct template and values ------------------------------

    def _render(self, job: Job, value: Any, path: str, where: str, targs: dict[str, Any],
                what: str, problems: list[_Problem]) -> Any:
        """`value` with every template rendered; None (and a problem) if one fails."""
        try:
            return self._render_value(value, path, targs)
        except _Failed as failed:
            exc, at = failed.args
            message = str(exc)
            problems.append(((where, message), f"{where}: {message}{what}",
                             _template_loc(job, at, exc.lineno)))
            return None

    def _jso(self, part: Any) -> Any:
        """The part's JSON, once per part (jobs of one pattern share theirs)."""
        return self._jsos.get(part, (), part.to_jso)

    def _render_value(self, value: Any, path: str, targs: dict[str, Any]) -> Any:
        """`value` with its templates rendered: `value` itself if it has none, else one
        copy per distinct rendering (callers only read it)."""
        if isinstance(value, str):
            return self._render_one(value, path, targs) if "{" in value else value
        if not isinstance(value, (list, dict)) or not value:
            return value
        templates = self._templates.get(value, path, lambda: list(_templates_in(value, [], path)))
        if not templates:
            return value
        texts = tuple(self._render_one(template, at, targs) for _, at, template in templates)
        key = (id(value), path, texts)
        rendered = self._rendered.get(key)
        if rendered is None:
            rendered = self._rendered[key] = _replaced(value, templates, texts)
        return rendered

    def _render_one(self, template: str, path: str, targs: dict[str, Any]) -> str:
        try:
            names = self._names.get(template)
            if names is None:
                names = self._names[template] = tuple(sorted(template_names(template)))
            key: tuple[Any, ...] | None = (template, *(targs.get(n, _ABSENT) for n in names))
            try:
                hash(key)
            except TypeError:  # a value that cannot be a key: render it every time
                key = None
            result: Any = self._renders.get(key, _ABSENT) if key is not None else _ABSENT
            if result is _ABSENT:
                try:
                    result = render(template, targs)
                except TemplateError as exc:
                    result = exc
                if key is not None:
                    self._renders[key] = result
            if isinstance(result, TemplateError):
                raise result
            return result
        except TemplateError as exc:
            raise _Failed(exc, path) from None

    def _bind(self, program: dict[str, Any]) -> str | None:
        """Why the rendered program cannot be bound, or None; once per distinct program
        (and looked up once per object: jobs share their renderings)."""
        def why() -> str | None:
            key = repr(program)
            if key not in self._bound:
                try:
                    bind_program(program)
                    self._bound[key] = None
                except ValueError as exc:
                    self._bound[key] = str(exc)
            return self._bound[key]

        return self._bound_of.get(program, (), why)

    def _check_target(self, target_id: str, given: dict[str, str], run_args: dict[str, str],
                      what: str, job: Job, where: str, problems: list[_Problem]) -> None:
        """A dependency or scheduled job exists and every one of its params gets a value
        (problems located at the job's part `where`)."""
        params = self.targets.get(target_id)
        if params is None:
            if target_id in self.broken:
                return  # its own errors are reported at its file
            problems.append(((what, target_id), f"{what} on unknown job {target_id!r}"
                             f"{did_you_mean(target_id, list(self.targets))}", job.locs.get(where)))
            return
        extra = sorted(set(given) - set(params))
        if extra:
            problems.append(((what, target_id, "extra"),
                             f"{what} on {target_id!r} gives arg{'s' if len(extra) > 1 else ''} "
                             f"{', '.join(extra)} that it does not take (its params: "
                             f"{', '.join(params) or 'none'})", job.locs.get(where)))
        # Args not given are taken from this run's args of the same name.
        missing = missing_params(params, {**run_args, **given})
        if missing:
            problems.append(((what, target_id, "missing"),
                             f"{what} on {target_id!r} does not bind its param"
                             f"{'s' if len(missing) > 1 else ''} {', '.join(missing)}; give "
                             f"{'them' if len(missing) > 1 else 'it'} in args", job.locs.get(where)))


_ABSENT = object()


class _ById:
    """Values worked out once per object (and key), the object held so that its id is
    not reused: jobs of one pattern share their parts, and looking one up by id is
    cheaper than by its text."""

    def __init__(self) -> None:
        self._found: dict[tuple[int, Any], tuple[Any, Any]] = {}

    def get(self, obj: Any, key: Any, make: Callable[[], Any]) -> Any:
        found = self._found.get((id(obj), key))
        if found is None:
            found = self._found[id(obj), key] = (obj, make())
        return found[1]


def _templates_in(value: Any, keys: list[Any], path: str) -> Iterator[tuple[list[Any], str, str]]:
    """(the keys to it, its dotted path, the template) of each template in `value`, in
    the order of its keys and items."""
    if isinstance(value, str):
        if "{" in value:
            yield keys, path, value
    elif isinstance(value, (list, dict)):
        for key, item in (enumerate(value) if isinstance(value, list) else value.items()):
            if isinstance(item, (str, list, dict)):
                yield from _templates_in(item, [*keys, key], f"{path}.{key}")


def _replaced(value: Any, templates: list[tuple[list[Any], str, str]], texts: tuple[str, ...]) -> Any:
    """A copy of `value` with each template (at its keys) replaced by its text."""
    copy = _copied(value)
    for (keys, _, _), text in zip(templates, texts):
        inner = copy
        for key in keys[:-1]:
            inner = inner[key]
        inner[keys[-1]] = text
    return copy


def _copied(value: Any) -> Any:
    """A copy of the lists and dicts of `value` (strings and numbers are shared)."""
    if isinstance(value, list):
        return [_copied(item) for item in value]
    if isinstance(value, dict):
        return {key: _copied(item) for key, item in value.items()}
    return value


class _Failed(Exception):
    """A template at a path (`program.command`) failed: (TemplateError, path)."""


def _template_loc(job: Job, path: str, lineno: int | None = None) -> Location | None:
    """Where the template at `path` is written, down to the template's line `lineno`;
    else where its nearest enclosing part is (`program.timeout.duration` → `program`)."""
    loc = job.locs.get(path)
    if loc is None:
        head = path
        while "." in head and loc is None:
            head = head.rpartition(".")[0]
            loc = job.locs.get(head)
        return loc
    if lineno and lineno > 1 and job.source and loc.line:
        lines = job.source.splitlines()
        # A block scalar (`command: |`) starts on the line after its indicator.
        if loc.line <= len(lines) and lines[loc.line - 1][loc.col - 1:loc.col] in ("|", ">"):
            line = loc.line + lineno
            if line <= len(lines):
                text = lines[line - 1]
                return Location(loc.path, line, len(text) - len(text.lstrip()) + 1)
    return loc


def check_cycles(graph: Graph, diags: Diagnostics) -> None:
    """Dependency cycles would make every run of them wait forever."""
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
    # A DST-skipped time (`dst_gap: skip`) creates no run to list.
    runs = [run for job in jobs_dir.jobs.values() for run in job_runs(job, start, stop)
            if not run.skip_reason]
    runs.sort(key=lambda r: (r.time, r.job.job_id))
    return [{"job_id": r.job.job_id, "args": r.args, "time": format_time(r.time)} for r in runs]


# -- check-job on many cores -----------------------------------------------------------

# Below this many files per process, forking costs more than it saves.
MIN_FILES_PER_WORKER = 1000


def default_workers(files: int) -> int:
    """Processes worth using for `files` job files on this machine."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, files // MIN_FILES_PER_WORKER))


def load_and_check(path: Path, workers: int | None = None, *, display_root: str | None = None,
                   progress: ProgressFn | None = None,
                   now: dt.datetime | None = None) -> tuple[list[Diagnostic], int]:
    """What `load_jobs_dir` + `check_jobs_dir` report, and how many jobs there are, with
    the files shared among `workers` forked processes (by default, as many as pay: a
    pure-Python load and check of 10 000 files takes seconds on one core).

    Each process loads a contiguous share of the files and sends back its problems and
    its jobs' params; with every job's params known, each checks its own jobs; cycles
    are found here. Problems come in the order one process would find them.
    """
    import multiprocessing

    jobs_dir, files = open_jobs_dir(path, display_root=display_root)
    workers = max(1, min(default_workers(len(files)) if workers is None else workers, len(files)))
    now = now or dt.datetime.now(UTC)
    if workers == 1:
        load_files(jobs_dir, files, display_root, progress)
        with _loaded_frozen():
            problems = [*jobs_dir.diags.items, *check_jobs_dir(jobs_dir, now=now).items]
        return problems, len(jobs_dir.jobs) + len(jobs_dir.broken)
    context = multiprocessing.get_context("fork")  # the loaded config, without pickling
    done = context.Array("i", workers, lock=False)  # files each has loaded, for the progress bar
    shares = [files[len(files) * i // workers:len(files) * (i + 1) // workers] for i in range(workers)]
    pipes: list[Any] = []  # multiprocessing Connections, one per worker
    procs: list[Any] = []
    try:
        for share in shares:
            ours, theirs = context.Pipe()
            proc = context.Process(target=_worker, daemon=True,
                                   args=(theirs, jobs_dir, share, display_root, now, done, len(procs)))
            proc.start()
            theirs.close()
            pipes.append(ours)
            procs.append(proc)
        loaded = _gather(pipes, procs, progress, done, len(files))
        targets: dict[str, list[str]] = {}
        broken: set[str] = set()
        graph: Graph = {}
        for _, params, broken_ids, edges in loaded:
            targets.update(params)
            broken.update(broken_ids)
            graph.update(edges)
        for pipe in pipes:
            pipe.send((targets, broken))
        checked = _gather(pipes, procs, None, done, len(files))
    finally:
        for proc in procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.kill()
    # The order of one process: the directory's own problems, each file's as loaded,
    # then the checks of the jobs that loaded and of those that partly did, then cycles.
    problems = list(jobs_dir.diags.items)
    for load_problems, *_ in loaded:
        problems.extend(load_problems)
    for jobs_problems, _ in checked:
        problems.extend(jobs_problems)
    for _, partial_problems in checked:
        problems.extend(partial_problems)
    cycles = Diagnostics()
    check_cycles(graph, cycles)
    problems.extend(cycles.items)
    return problems, len(targets) + len(broken)


@contextmanager
def _loaded_frozen() -> Iterator[None]:
    """The objects alive now (the loaded jobs) left out of the cyclic GC's collections
    meanwhile: the checks made collections that walked 10 000 jobs each time, a third
    of their time.  Garbage frozen with them is collected once they thaw."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _gather(pipes: list[Any], procs: list[Any], progress: ProgressFn | None, done: Any,
            total: int) -> list[Any]:
    """One answer from each worker, in their order; a worker's failure is raised here."""
    from multiprocessing.connection import wait

    answers: dict[int, Any] = {}
    while len(answers) < len(pipes):
        ready = wait([p for i, p in enumerate(pipes) if i not in answers], timeout=0.1)
        if progress:
            progress(sum(done), total)
        for pipe in ready:
            i = pipes.index(pipe)
            try:
                answer = pipes[i].recv()
            except EOFError:
                raise RuntimeError(f"a check-job worker died (exit code {procs[i].exitcode})") from None
            if isinstance(answer, str):  # its traceback
                raise RuntimeError(f"a check-job worker failed:\n{answer}")
            answers[i] = answer
    return [answers[i] for i in range(len(pipes))]


def _worker(pipe: Any, opened: JobsDir, files: list[Path], display_root: str | None,
            now: dt.datetime, done: Any, index: int) -> None:
    """One share of the files: loaded, then checked once every job's params are known."""
    import traceback

    try:
        def counted(loaded: int, _total: int) -> None:
            done[index] = loaded

        jobs_dir = JobsDir(opened.path, opened.config, {}, Diagnostics())
        load_files(jobs_dir, files, display_root, counted)
        pipe.send((jobs_dir.diags.items, {job_id: job.params for job_id, job in jobs_dir.jobs.items()},
                   list(jobs_dir.broken), dependency_graph(jobs_dir.jobs.values())))
        targets, broken = pipe.recv()
        diags = Diagnostics()
        checker = _Checker(jobs_dir, now, diags, targets, broken)
        with _loaded_frozen():
            for job in jobs_dir.jobs.values():
                checker.check_job(job)
            of_jobs = len(diags.items)
            for job in jobs_dir.partial.values():
                checker.check_job(job)
        pipe.send((diags.items[:of_jobs], diags.items[of_jobs:]))
    except BaseException:
        pipe.send(traceback.format_exc())
    finally:
        pipe.close()

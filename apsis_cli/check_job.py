"""`apsisctl check-job`: load, check and report, grouping files by their jobs directory."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from apsis.errors import Diagnostic

from .common import UserError
from .exitcodes import ExitStatus

# Below this many files a progress bar would only flicker.
PROGRESS_MIN_FILES = 500


class _ProgressBar:
    """A progress bar on stderr, shown once loading turns out to have many files."""

    def __init__(self) -> None:
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, done: int, total: int) -> None:
        if self.progress is None:
            if total < PROGRESS_MIN_FILES or not sys.stderr.isatty():
                return
            from rich.console import Console
            from rich.progress import Progress

            self.progress = Progress(console=Console(stderr=True), transient=True)
            self.task = self.progress.add_task("checking jobs", total=total)
            self.progress.start()
        self.progress.update(self.task, completed=done)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()


def _given_root(given: str, rel: str, root: Path) -> str | None:
    """The jobs dir as the user spelled it: `given` without `rel`'s parts at its end, so
    that problems name the file as given (`./jobs/a.yaml`, not `jobs/a.yaml`)."""
    head = given
    for _ in Path(rel).parts:
        head, _tail = os.path.split(head.rstrip(os.sep) or head)
    try:
        return head if os.path.samefile(head or ".", root) else None
    except OSError:
        return None


def _not_a_job(rel: str, given: str) -> Diagnostic | None:
    """Why a file named on the command line is no job, as a warning (the jobs dir itself
    warns of `.yml` files), so that it is not reported as checked and clean."""
    from apsis.errors import Location
    from apsis.jobs_dir import CONFIG_NAME, JOB_SUFFIX, NOT_JOB_SUFFIX

    if rel == CONFIG_NAME:  # the jobs dir's config: checked with its jobs dir
        return None
    if any(part.startswith(".") for part in Path(rel).parts):
        why = "names starting with '.' are not jobs"
    elif not rel.endswith((JOB_SUFFIX, NOT_JOB_SUFFIX)):
        why = f"only {JOB_SUFFIX} files are jobs"
    else:
        return None
    return Diagnostic(Location(given), f"not a job: {why}", "warning")


def _groups(paths: tuple[str, ...], not_jobs: list[Diagnostic],
            ) -> dict[Path, tuple[str, list[Path] | None, dict[str, str] | None]]:
    """Jobs dir → (how to display it, files to load or None for all, files to report on:
    their path inside the jobs dir → the path as given on the command line). Files
    given that cannot be jobs are left out, with a warning added to `not_jobs`."""
    from apsis.jobs_dir import find_jobs_dir

    groups: dict[Path, tuple[str, list[Path] | None, dict[str, str] | None]] = {}
    for given in paths:
        path = Path(given)
        if path.is_dir():
            root = path
            groups[root.resolve()] = (given, None, None)
            continue
        root = find_jobs_dir(path)
        key = root.resolve()
        rel = os.path.normpath(os.path.relpath(path.resolve(), key))
        warning = _not_a_job(rel, given)
        if warning is not None:
            not_jobs.append(warning)
            continue
        shown_root = _given_root(given, rel, key)
        if shown_root is None:
            shown_root = os.path.relpath(root) if not path.is_absolute() else str(root.resolve())
        display, _, wanted = groups.get(key, (shown_root, None, {}))
        if wanted is None:  # the whole directory is already being checked
            continue
        wanted.setdefault(rel, given)
        groups[key] = (display, None, wanted)
    return groups


def _as_given(problem: Diagnostic, display: str, wanted: dict[str, str]) -> Diagnostic | None:
    """The problem if it is in a file asked for (named as given) or in `.apsis-jobs.yaml`."""
    loc = problem.loc
    if loc is None or loc.path.endswith(".apsis-jobs.yaml"):
        return problem
    rel = os.path.normpath(os.path.relpath(os.path.normpath(loc.path), os.path.normpath(display or ".")))
    if rel not in wanted:
        return None
    return dataclasses.replace(problem, loc=dataclasses.replace(loc, path=wanted[rel]))


def run_check_job(paths: tuple[str, ...], fmt: str, list_runs: bool, from_: str | None,
                  to: str | None, quiet: bool, workers: int | None = None) -> int:
    from apsis.check import check_jobs_dir, list_runs as list_runs_fn, load_and_check
    from apsis.jobs_dir import load_jobs_dir
    from apsis.lib.timefmt import parse_time

    window = None
    if list_runs:
        try:
            start = parse_time(from_) if from_ else dt.datetime.now(dt.UTC)
            stop = parse_time(to) if to else start + dt.timedelta(days=1)
        except ValueError as exc:
            raise UserError(str(exc), "times are ISO 8601, a date (00:00 UTC), 'now' or '+1d'") from None
        if stop <= start:
            raise UserError("--to must be after --from")
        window = (start, stop)
    elif from_ or to:
        raise UserError("--from and --to only make sense with --list-runs", "add --list-runs")

    problems: list[Diagnostic] = []
    total_jobs = 0
    runs: list[dict] = []
    for root, (display, _, wanted) in _groups(paths, problems).items():
        progress = _ProgressBar()
        try:
            if window:  # the runs need the jobs here: loaded in this process
                jobs_dir = load_jobs_dir(root, display_root=display, progress=progress)
                listed = list_runs_fn(jobs_dir, *window)
                if wanted is not None:  # files given: their runs, not their neighbours'
                    ids = {Path(rel).with_suffix("").as_posix() for rel in wanted}
                    listed = [run for run in listed if run["job_id"] in ids]
                runs.extend(listed)
                items = [*jobs_dir.diags.items, *check_jobs_dir(jobs_dir).items]
                count = len(jobs_dir.jobs) + len(jobs_dir.broken)
            else:
                items, count = load_and_check(root, workers, display_root=display, progress=progress)
        finally:
            progress.stop()
        if wanted is not None:
            items = [d for d in (_as_given(p, display, wanted) for p in items) if d is not None]
            total_jobs += len(wanted)
        else:
            total_jobs += count
        problems.extend(items)

    errors = [p for p in problems if p.severity == "error"]
    # In file order, so that a file's problems read top to bottom.
    problems.sort(key=lambda p: (p.loc.path, p.loc.line, p.loc.col) if p.loc else ("", 0, 0))
    # With --list-runs, stdout is JSON Lines only (for `| jq`): problems go to stderr.
    _report(problems, fmt, total_jobs, quiet, to_stderr=window is not None)
    if window:
        # The runs of the jobs that loaded, even when others have errors (exit 1 says so).
        runs.sort(key=lambda r: (r["time"], r["job_id"]))
        for run in runs:
            click.echo(json.dumps(run, ensure_ascii=False))
    return ExitStatus.FAILURE if errors else ExitStatus.SUCCESS


def _report(problems: list[Diagnostic], fmt: str, total_jobs: int, quiet: bool,
            to_stderr: bool = False) -> None:
    errors = sum(p.severity == "error" for p in problems)
    warnings = len(problems) - errors
    if fmt == "json":
        click.echo(json.dumps({"ok": errors == 0, "jobs": total_jobs, "errors": errors,
                               "warnings": warnings, "problems": [p.to_jso() for p in problems]},
                              ensure_ascii=False), err=to_stderr)
        return
    for p in problems:
        if fmt == "github":
            loc = p.loc
            where = f"file={loc.path},line={loc.line},col={loc.col}" if loc and loc.line else (
                f"file={loc.path}" if loc else "")
            message = p.message.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
            click.echo(f"::{p.severity} {where}::{message}", err=to_stderr)
        else:
            click.echo(str(p), err=to_stderr)
    if not quiet and fmt == "text":
        summary = f"{total_jobs} job{'s' if total_jobs != 1 else ''} checked: "
        summary += f"{errors} error{'s' if errors != 1 else ''}"
        if warnings:
            summary += f", {warnings} warning{'s' if warnings != 1 else ''}"
        click.echo(summary, err=True)

"""Loading a jobs directory: every job file plus the directory's `.apsis-jobs.yaml`.

Loading is forgiving (a broken file is reported and the rest still load), so the
daemon can keep running the previous version of a broken job and `check-job`
can report every problem of a directory in one pass.
"""

from __future__ import annotations

import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from collections.abc import Callable, Iterable, Iterator

from .action import parse_actions, parse_successors
from .cond import parse_conditions
from .errors import Diagnostics, JobError, Location
from .lib.strict import Fields, as_bool, as_str, as_str_list, did_you_mean, items_with_locs
from .parse_context import ParseContext
from .model.job import Job, Locs, shared
from .program import parse_program
from .yamlload import YMap, YSeq, load_yaml, loc_of

CONFIG_NAME = ".apsis-jobs.yaml"
JOB_SUFFIX = ".yaml"
# Not a job (as in Apsis), but likely meant as one: loading warns about it.
NOT_JOB_SUFFIX = ".yml"
HOST_GROUP_TYPES = ("round-robin", "random")

ProgressFn = Callable[[int, int], None]
T = TypeVar("T")


@dataclass
class JobsDirConfig:
    """The jobs directory's shared definitions, from `.apsis-jobs.yaml`."""

    globals: dict[str, Any] = field(default_factory=dict)
    functions: dict[str, str] = field(default_factory=dict)
    calendars: dict[str, Any] = field(default_factory=dict)
    expand: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    host_groups: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass
class JobsDir:
    path: Path
    config: JobsDirConfig
    jobs: dict[str, Job]
    diags: Diagnostics
    # Job ids whose file exists but failed to load: the daemon keeps their old version.
    broken: dict[str, list[str]] = field(default_factory=dict)
    # What parsed of a broken job (its program at least), so that `check-job` can still
    # check its templates: every problem of a file in one pass.
    partial: dict[str, Job] = field(default_factory=dict)

    def get_job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            hint = did_you_mean(job_id, list(self.jobs))
            raise LookupError(f"no job {job_id!r}{hint}") from None

    def parse_context(self, diags: Diagnostics | None = None) -> ParseContext:
        return make_context(self.config, diags or Diagnostics())

    def expansions(self, job: Job, args: dict[str, str]) -> dict[str, Any]:
        from .template import expand_args, merge_expand

        return expand_args(args, merge_expand(self.config.expand, job.expand), self.config.calendars)

    def template_args(self, job: Job, args: dict[str, str], run_id: str | None = None) -> dict[str, Any]:
        """Everything a template of this job sees for one run (SPEC §1.2 precedence)."""
        from .template import template_args

        return template_args(
            globals_=self.config.globals,
            expansions=self.expansions(job, args),
            args=args,
            run_id=run_id,
            job_id=job.job_id,
            functions=self.config.functions,
            calendars=self.config.calendars,
        )


def job_id_for(rel_path: str) -> str:
    """`data/load prices.yaml` → `data/load prices`."""
    rel = rel_path.replace(os.sep, "/")
    return rel[: -len(JOB_SUFFIX)] if rel.endswith(JOB_SUFFIX) else rel


def iter_job_files(root: Path, not_jobs: list[Path] | None = None) -> Iterator[Path]:
    """Job files under `root`, sorted; dot files and dot folders are not jobs.

    `.yml` files are not jobs either (as in Apsis); they are added to `not_jobs` so that
    the caller can say so: a job written as `.yml` must not be lost silently.
    """
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            if name.endswith(JOB_SUFFIX):
                yield Path(dirpath) / name
            elif name.endswith(NOT_JOB_SUFFIX) and not_jobs is not None:
                not_jobs.append(Path(dirpath) / name)


_NOT_REGULAR = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISDIR, "a directory"))


def _not_regular(path: Path) -> str | None:
    """What `path` is (symlinks followed) when it is no regular file, like "a FIFO".

    Opening a FIFO for reading blocks until a writer comes, for good: it would stop the
    loading, job-file watching and then the daemon's exit. None for a regular file and
    for one that cannot be examined (reading it then says why).
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return _kind(mode)


def _kind(mode: int) -> str | None:
    return next((kind for test, kind in _NOT_REGULAR if test(mode)), None)


class _FileExaminer:
    """What each job file under `root` is and where it really is, for `_load_one`.

    One `lstat` a file, and each folder's real path worked out once: a `realpath` of
    each file and of the root (a system call for each part of the path) and two
    `relpath`s were a fifth of loading a big directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = str(root)
        self.prefix = os.path.join(self.root, "")
        self.real_root = os.path.realpath(root)
        self.real_prefix = os.path.join(self.real_root, "")
        self.folders: dict[str, str] = {}

    def rel(self, file: Path) -> str:
        """`os.path.relpath(file, root)`, by a cut when `file` is written under `root`."""
        path = str(file)
        if path.startswith(self.prefix):
            rest = path[len(self.prefix):]
            if rest and os.path.normpath(rest) == rest and rest.partition(os.sep)[0] != "..":
                return rest
        return os.path.relpath(path, self.root)

    def examine(self, file: Path) -> tuple[str | None, str | None]:
        """(where `file` really is when a symlink takes it outside the root (job ids
        cannot escape the jobs directory, SPEC §1.11, nor can the files behind them),
        what it is, symlinks followed, when it is no regular file: `_not_regular`)."""
        path = str(file)
        try:
            mode: int | None = os.lstat(path).st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISLNK(mode):
            folder, name = os.path.split(path)
            real_folder = self.folders.get(folder)
            if real_folder is None:
                real_folder = self.folders[folder] = os.path.realpath(folder)
            real = os.path.join(real_folder, name)
        else:
            real = os.path.realpath(path)
            try:
                mode = os.stat(path).st_mode
            except OSError:
                mode = None
        inside = real == self.real_root or real.startswith(self.real_prefix)
        return None if inside else real, None if mode is None else _kind(mode)


def _read_text(path: Path) -> str:
    """The text of a job file, by an open that cannot block: a FIFO put in place since
    the directory was walked is refused, not waited on.  Newlines are read as Python's
    text files read them (`\r\n` and `\r` are `\n`)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        size = os.fstat(fd)
        if not stat.S_ISREG(size.st_mode):
            raise OSError(0, "not a regular file")
        chunks = []
        while chunk := os.read(fd, size.st_size + 1):  # until the end (it may have grown)
            chunks.append(chunk)
    finally:
        os.close(fd)
    text = b"".join(chunks).decode("utf-8")
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def find_jobs_dir(path: Path) -> Path:
    """The jobs directory a file belongs to: the nearest ancestor with `.apsis-jobs.yaml`."""
    start = path.parent if path.is_file() else path
    for folder in [start, *start.resolve().parents]:
        if (folder / CONFIG_NAME).is_file():
            return folder
    return start


def make_context(config: JobsDirConfig, diags: Diagnostics) -> ParseContext:
    from .calendar import get_calendar

    def resolve(name: str):
        return get_calendar(name, config.calendars)

    return ParseContext(diags=diags, get_calendar=resolve, host_groups=config.host_groups)


def _display(root: Path, display_root: str | None, file: Path) -> str:
    rel = os.path.relpath(file, root)
    return os.path.join(display_root, rel) if display_root is not None else str(file)


def load_config(root: Path, diags: Diagnostics, display_root: str | None = None) -> JobsDirConfig:
    config = JobsDirConfig()
    path = root / CONFIG_NAME
    shown = _display(root, display_root, path)
    kind = _not_regular(path)
    if kind is not None:
        diags.warning(f"skipped: {kind}, not a regular file", Location(shown))
    if not path.is_file():
        return config
    with diags.collect():
        node = load_yaml(_read_text(path), shown)
        if node is None:
            return config
        f = Fields(node, CONFIG_NAME, diags, Location(shown))
        ctx = ParseContext(diags=diags)
        with diags.collect():
            globals_ = f.get("globals", {})
            if not isinstance(globals_, dict):
                raise JobError("globals must be a mapping", f.loc_of("globals"))
            config.globals = dict(globals_)
        with diags.collect():
            config.functions = _parse_functions(f)
        with diags.collect():
            if f.has("calendars"):
                from .calendar import parse_calendar_defs

                config.calendars = parse_calendar_defs(f.get("calendars"), ctx)
        with diags.collect():
            if f.has("expand"):
                from .template import parse_expand

                ctx = make_context(config, diags)
                config.expand = parse_expand(f.get("expand"), ctx)
        with diags.collect():
            config.host_groups = _parse_host_groups(f.get("host_groups", {}), f.loc_of("host_groups"), diags)
        f.done()
    return config


def _parse_functions(f: Fields) -> dict[str, str]:
    value = f.get("functions", {})
    if not isinstance(value, dict):
        raise JobError("functions must map names to 'module:attribute'", f.loc_of("functions"))
    functions = {}
    for name, spec in value.items():
        if not isinstance(spec, str) or ":" not in spec:
            raise JobError(f"function {name!r} must be 'module:attribute', not {spec!r}",
                           loc_of(value, name, f.loc))
        functions[str(name)] = spec
    return functions


def _parse_host_groups(value: Any, loc: Location | None, diags: Diagnostics) -> dict[str, dict[str, Any]]:
    if not isinstance(value, dict):
        raise JobError("host_groups must be a mapping of names to groups", loc)
    groups = {}
    for name, node in value.items():
        with diags.collect():
            f = Fields(node, f"host group {name!r}", diags, loc_of(value, name, loc))
            kind = f.get("type", "round-robin", as_str)
            if kind not in HOST_GROUP_TYPES:
                raise JobError(f"host group type must be one of {', '.join(HOST_GROUP_TYPES)}, "
                               f"not {kind!r}{did_you_mean(kind, HOST_GROUP_TYPES)}", f.loc_of("type"))
            hosts = f.require("hosts", as_str_list)
            if not hosts:
                raise JobError("a host group needs at least one host", f.loc_of("hosts"))
            f.done()
            groups[str(name)] = {"type": kind, "hosts": hosts}
    return groups


JOB_KEYS = ("params", "schedule", "program", "condition", "action", "successors",
            "metadata", "ad_hoc", "job_id", "expand")


def parse_job(node: Any, job_id: str, ctx: ParseContext, loc: Location | None = None) -> Job:
    """A job from its YAML mapping; every problem goes to `ctx.diags`, located."""
    diags = ctx.diags
    before = len(diags.items)
    f = Fields(node, "job", diags, loc)
    locs: dict[str, Any] = {}

    params: list[str] = []
    with diags.collect():
        params = f.get("params", [], _as_params)
        dupes = {p for p in params if params.count(p) > 1}
        if dupes:
            raise JobError(f"duplicate params: {', '.join(sorted(dupes))}", f.loc_of("params"))

    schedules = []
    if f.has("schedule"):
        from .schedule import parse_schedules

        with diags.collect():
            schedules = list(_parsed(ctx, f, "schedule", parse_schedules))
        _item_locs(f, "schedule", locs)

    program = None
    with diags.collect():
        if not f.has("program"):
            raise JobError("a job needs a 'program'", f.loc)
        program = _parsed(ctx, f, "program", parse_program)
    locs["program"] = f.loc_of("program")

    conditions = []
    if f.has("condition"):
        conditions = list(_parsed(ctx, f, "condition", parse_conditions))
        _item_locs(f, "condition", locs)

    actions = []
    if f.has("action"):
        actions = list(_parsed(ctx, f, "action", parse_actions))
        _item_locs(f, "action", locs)
    if f.has("successors"):
        successors = _parsed(ctx, f, "successors", parse_successors)
        successors_loc = f.loc_of("successors")
        for i in range(len(successors)):
            locs[f"action.{len(actions) + i}"] = successors_loc
        actions.extend(successors)

    metadata: dict[str, Any] = {}
    with diags.collect():
        metadata = _parse_metadata(f.get("metadata", {}), f.loc_of("metadata"))

    expand: dict[str, Any] = {}
    with diags.collect():
        if f.has("expand"):
            from .template import parse_expand

            expand = parse_expand(f.get("expand"), ctx)

    ad_hoc = False
    with diags.collect():
        ad_hoc = f.get("ad_hoc", False, as_bool)
    with diags.collect():
        given_id = f.get("job_id", None, as_str)
        if given_id is not None and given_id != job_id:
            diags.warning(f"job_id {given_id!r} is ignored: a job's id is its path ({job_id!r})",
                          f.loc_of("job_id"))
    f.done()
    _template_locs(node, locs)

    job = None if program is None else Job(
        job_id=job_id, params=params, program=program, schedules=schedules,
        conditions=conditions, actions=actions, metadata=metadata, expand=expand,
        ad_hoc=ad_hoc, path=loc.path if loc else None, locs=Locs.of(locs))
    if job is None or _errors_since(diags, before):
        raise BrokenJob(f"job {job_id!r} has errors", loc, job)
    return job


def _parsed(ctx: ParseContext, f: Fields, section: str,
            parse: Callable[[Any, Location | None, ParseContext], T]) -> T:
    """`parse` of the job's `section`, once per distinct value among the jobs parsed with
    `ctx`: 10 000 jobs written from a pattern have a few distinct programs and schedules,
    and parsing each again was most of loading them.  Jobs share what it gives, its
    fields shared with other jobs' (`_share_part`).  A value whose parse reported
    anything is parsed again for each job: each file gets its own located problems.
    """
    value = f.get(section)
    key = (section, repr(value))
    found = ctx.parsed.get(key)
    if found is not None:
        return found
    before = len(ctx.diags.items)
    result = parse(value, f.loc_of(section), ctx)
    for part in result if isinstance(result, list) else [result]:
        _share_part(part)
    # A value holding itself (YAML aliases) prints as `[...]` or `{...}`: its repr does
    # not tell it from others.
    if len(ctx.diags.items) == before and "...]" not in key[1] and "...}" not in key[1]:
        ctx.parsed[key] = result
    return result


def _item_locs(f: Fields, section: str, locs: dict[str, Any]) -> None:
    """Where each item of a one-or-list section is written (`condition.0`, ...)."""
    for i, (_, loc) in enumerate(items_with_locs(f.node[section], f.loc_of(section))):
        locs[f"{section}.{i}"] = loc


class BrokenJob(JobError):
    """A job file with errors; `partial` is what parsed of it, when its program did."""

    def __init__(self, message: str, loc: Location | None, partial: Job | None) -> None:
        super().__init__(message, loc)
        self.partial = partial


def _as_params(value: Any) -> list[str]:
    """A param, a list of them, or (as Apsis allows) a mapping whose keys are the params."""
    if isinstance(value, dict):
        value = list(value)
    return as_str_list(value)


def _template_locs(node: Any, locs: dict[str, Any]) -> None:
    """Records where each template string of a job is, by its dotted path
    (`program.command`, `condition.0.args.date`), so that a template's error points at
    the template, not at its section."""
    if not isinstance(node, YMap):
        return
    if "program" in node:
        _walk_templates(node["program"], "program", node, "program", locs)
    for section in ("condition", "action"):
        value = node.get(section)
        if isinstance(value, YMap):  # one item, written without a list
            _walk_templates(value, f"{section}.0", node, section, locs)
        elif isinstance(value, YSeq):
            _walk_templates(value, section, node, section, locs)


def _walk_templates(value: Any, path: str, container: YMap | YSeq, key: Any,
                    locs: dict[str, Any]) -> None:
    """`value` is `container[key]`: located only if it is a template (few values are)."""
    if isinstance(value, str):
        if "{" in value:
            locs[path] = container.loc_of(key)
    elif isinstance(value, YMap):
        for name, item in value.items():
            if not isinstance(item, str) or "{" in item:
                _walk_templates(item, f"{path}.{name}", value, name, locs)
    elif isinstance(value, YSeq):
        for i, item in enumerate(value):
            if not isinstance(item, str) or "{" in item:
                _walk_templates(item, f"{path}.{i}", value, i, locs)


def _parse_metadata(value: Any, loc: Location | None) -> dict[str, Any]:
    """Free-form, as in Apsis, except that `labels` must be strings."""
    if not isinstance(value, dict):
        raise JobError("metadata must be a mapping", loc)
    metadata = dict(value)
    if "labels" in metadata:
        labels = metadata["labels"]
        labels = [labels] if isinstance(labels, str) else labels
        if not isinstance(labels, list) or not all(isinstance(l, (str, int, float)) for l in labels):
            raise JobError("metadata.labels must be a list of strings", loc_of(value, "labels", loc))
        metadata["labels"] = [str(l) for l in labels]
    if "description" in metadata and metadata["description"] is not None:
        metadata["description"] = str(metadata["description"])
    return metadata


def load_job_file(path: Path, job_id: str, ctx: ParseContext, shown: str) -> Job:
    try:
        text = _read_text(path)
    except UnicodeDecodeError as exc:
        raise JobError(f"not UTF-8 text: {exc.reason} at byte {exc.start}", Location(shown)) from None
    except OSError as exc:
        raise JobError(f"cannot read: {exc.strerror}", Location(shown)) from None
    node = load_yaml(text, shown)
    if node is None:
        raise JobError("empty job file: a job needs at least a 'program'", Location(shown, 1, 1))
    try:
        job = parse_job(node, job_id, ctx, Location(shown, 1, 1) if not isinstance(node, YMap) else node.loc)
    except BrokenJob as exc:
        if exc.partial is not None:
            exc.partial.source = text
        raise
    job.source = text
    _share_parts(job)
    return job


def _share_part(part: Any) -> None:
    """A parsed part holds the same objects as other jobs' where they are equal
    (model.job.shared; strings interned): 10 000 jobs written from one pattern each held
    their own copy of the same timeout, stop signal, env, args, states and labels.
    Parsed parts are never changed in place."""
    # (A family's own class may have slots: nothing to share then.)
    fields: dict[str, Any] = getattr(part, "__dict__", None) or {}
    for name, value in fields.items():
        if isinstance(value, str):
            fields[name] = sys.intern(value)
        elif isinstance(value, (dict, list)):
            fields[name] = shared(value)


def _share_parts(job: Job) -> None:
    """A job's own values shared with other jobs' (its parts are, as parsed)."""
    job.params = shared(job.params)
    job.metadata = shared(job.metadata)
    job.expand = shared(job.expand)


def load_jobs_dir(path: str | Path, *, display_root: str | None = None,
                  only: list[Path] | None = None, progress: ProgressFn | None = None) -> JobsDir:
    """Loads every job (or just `only`); problems are collected, never raised.

    `display_root` is how the user spelled the directory, so that messages
    name files the way the user would.
    """
    loaded, files = open_jobs_dir(path, display_root=display_root, only=only)
    load_files(loaded, files, display_root, progress)
    return loaded


def open_jobs_dir(path: str | Path, *, display_root: str | None = None,
                  only: list[Path] | None = None) -> tuple[JobsDir, list[Path]]:
    """The directory with its config loaded but no job yet, and its job files: the
    first half of `load_jobs_dir`, for `check-job` to share the files among processes."""
    root = Path(path)
    diags = Diagnostics()
    if not root.is_dir():
        diags.error(f"not a directory: {display_root or root}")
        return JobsDir(root, JobsDirConfig(), {}, diags), []
    config = load_config(root, diags, display_root)
    not_jobs: list[Path] = []
    files = only if only is not None else list(iter_job_files(root, not_jobs))
    for file in not_jobs:
        diags.warning(f"not a job: only {JOB_SUFFIX} files are jobs; rename it to "
                      f"{file.stem}{JOB_SUFFIX} if it is one", Location(_display(root, display_root, file)))
    return JobsDir(root, config, {}, diags), files


def load_files(into: JobsDir, files: list[Path], display_root: str | None = None,
               progress: ProgressFn | None = None) -> None:
    """Loads job files into `into`, in order; their problems go to its diags."""
    ctx = make_context(into.config, into.diags)
    examiner = _FileExaminer(into.path)
    for i, file in enumerate(files):
        _load_one(into, file, ctx, display_root, examiner)
        if progress:
            progress(i + 1, len(files))


def _load_one(into: JobsDir, file: Path, ctx: ParseContext, display_root: str | None,
              examiner: _FileExaminer) -> None:
    """Loads one job file into `into` (its job, or why it is broken or skipped)."""
    diags = ctx.diags
    rel = examiner.rel(file)
    job_id = job_id_for(rel)
    shown = os.path.join(display_root, rel) if display_root is not None else str(file)
    before = len(diags.items)
    target, kind = examiner.examine(file)
    if target is not None:
        diags.error(f"refused: a symlink to {target}, outside the jobs directory; "
                    "copy the file in, or link to a file inside", Location(shown))
        into.broken[job_id] = _errors_since(diags, before)
    elif kind is not None:
        diags.warning(f"skipped: {kind}, not a regular file", Location(shown))
    else:
        try:
            into.jobs[job_id] = load_job_file(file, job_id, ctx, shown)
        except JobError as exc:
            if not _errors_since(diags, before):  # not yet reported by the parser itself
                diags.add(exc)
            into.broken[job_id] = _errors_since(diags, before)
            if isinstance(exc, BrokenJob) and exc.partial is not None:
                into.partial[job_id] = exc.partial


def _errors_since(diags: Diagnostics, before: int) -> list[str]:
    """The errors reported since `diags` held `before` problems, as text."""
    return [str(d) for d in diags.items[before:] if d.severity == "error"]


def reload_files(old: JobsDir, paths: Iterable[Path]) -> tuple[JobsDir, set[str]] | None:
    """`old` with only these files loaded again, and the ids of the jobs they are; None
    when that is not enough (the directory's config changed, or a folder did).

    A jobs directory of 10 000 files is not parsed again for one edited job.
    """
    root = old.path.resolve()
    new = JobsDir(old.path, old.config, dict(old.jobs), Diagnostics(),
                  dict(old.broken), dict(old.partial))
    ctx = make_context(old.config, new.diags)
    examiner = _FileExaminer(old.path)
    touched: set[str] = set()
    for path in paths:
        path = Path(path)
        try:
            rel = path.resolve().relative_to(root) if path.is_absolute() else path
        except ValueError:
            continue  # not under the jobs directory
        if path.name == CONFIG_NAME or path.is_dir():
            return None
        if any(part.startswith(".") for part in rel.parts) or path.suffix != JOB_SUFFIX:
            if path.suffix == NOT_JOB_SUFFIX:
                new.diags.warning(f"not a job: only {JOB_SUFFIX} files are jobs; rename it "
                                  f"to {path.stem}{JOB_SUFFIX} if it is one", Location(str(rel)))
            continue
        job_id = job_id_for(str(rel))
        touched.add(job_id)
        for kept in (new.jobs, new.broken, new.partial):
            kept.pop(job_id, None)
        if path.exists():
            _load_one(new, old.path / rel, ctx, None, examiner)
    return new, touched

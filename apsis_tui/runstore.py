"""An in-memory, sorted, filtered store of runs for the TUI.

The Runs screen shows up to ~100 000 runs and receives a trickle of updates from the
event stream. Widgets need three things fast: the run at a row, the row of a run
(to keep the cursor on it when rows arrive) and where *now* falls between past and
future runs. This module keeps, in plain Python:

- ``_runs``: run id -> run dict (the SPEC §1.6 JSON object, or a summary of it);
- ``_keys``: run id -> sort key ``(schedule epoch, run number, run id)``;
- ``_view``: the sorted list of sort keys of the runs that pass the filter.

Updates locate rows with ``bisect`` (O(log n) comparisons; the list shift that
follows is a C ``memmove``, microseconds for 100 000 rows). A batch of more than a
few runs (pages of the initial load) is merged instead: its keys sorted, then put
before what is there (pages come newest first: a list copy) or merged by one
``list.sort`` of two sorted runs (linear), never 100 000 shifts of a growing list.
A batch of runs all new to the store (every page of a load) takes a bulk path: the
dicts filled by ``update`` over ``zip``, no per-run Python beyond the sort key. A load
may also ``stage`` its pages: that work is done page by page, and ``commit`` merges the
staged keys into the view later, once for many pages (a table repaints once for
them). Arg widths cost nothing until asked: runs entering the view are queued, and
the queue is folded into the widths when the table next lays out its columns.
A filter change is one list comprehension over the whole order, which stays well
under a second for 100 000 runs. Headless: this module never imports Textual.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime
from itertools import compress, count
from typing import Any

from apsis.present import parse_time

Run = Mapping[str, Any]
RunPredicate = Callable[[Run], bool]
SortKey = tuple[float, int, str]

_MERGE_BATCH = 64  # a batch of more runs than this is merged, not inserted one by one


def run_number(run_id: str) -> int:
    """The integer part of ``r12345``; ids of another shape sort first."""
    try:
        return int(run_id[1:])
    except (ValueError, IndexError):
        return -1


def schedule_time(run: Run) -> float:
    """The time a run sorts by: its schedule time, else the earliest time it has."""
    times = run.get("times") or {}
    when = parse_time(times.get("schedule"))
    if when is not None:
        return when
    parsed = [t for t in map(parse_time, times.values()) if t is not None]
    return min(parsed) if parsed else 0.0


def sort_key(run: Run) -> SortKey:
    """``(schedule epoch, run number, run id)``; inlined fast path, it runs per run."""
    run_id = str(run["run_id"])
    try:
        number = int(run_id[1:])
    except ValueError:
        number = -1
    times = run.get("times")
    text = times.get("schedule") if times else None
    if text:
        try:
            parsed = datetime.fromisoformat(text)
        except (TypeError, ValueError):
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return (parsed.timestamp(), number, run_id)
    return (schedule_time(run), number, run_id)


def _merged(keys: list[SortKey], new: list[SortKey]) -> list[SortKey]:
    """Sorted `keys` with the (unsorted, absent) `new` keys merged in. A page of the load
    (newest first) all sorts before what is there: a copy, not a comparison per key."""
    if not new:
        return keys
    new.sort()
    if not keys or new[-1] < keys[0]:
        return new + keys
    keys += new
    if new[0] < keys[-len(new) - 1]:
        keys.sort()  # two sorted runs: one linear merge
    return keys


class RunStore:
    """Runs keyed by id, kept sorted by schedule time and filtered by a predicate."""

    def __init__(self, predicate: RunPredicate | None = None) -> None:
        self._runs: dict[str, Run] = {}
        self._keys: dict[str, SortKey] = {}
        self._order: list[SortKey] = []
        self._view: list[SortKey] = []
        self._predicate: RunPredicate | None = predicate
        self._stamps: dict[str, int] = {}
        self._stamp_counter = count(1)
        # Per-view aggregates, maintained incrementally: they decide whether the
        # table shows a job column or the args of a single job as columns.
        self._view_jobs: dict[str, int] = {}
        # arg name -> longest value; None until asked for after a full refilter. Runs
        # that entered the view since it was last asked for wait in _unwidened.
        self._view_args: dict[str, int] | None = {}
        self._unwidened: list[Run] = []
        # Staged runs (see `stage`): held, but in neither the order nor the view yet;
        # the keys of those that pass the filter, and what they add to the aggregates.
        self._staged: list[SortKey] = []
        self._staged_shown: list[SortKey] = []
        self._staged_jobs: Counter[str] = Counter()
        self._staged_args: dict[str, int] = {}
        self._id_width = 0
        self.version = 0  # bumped on every change, for caches in widgets

    # -- reading -------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of rows in the filtered view."""
        return len(self._view)

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    @property
    def total(self) -> int:
        """The number of runs held, filtered or not (staged ones not yet)."""
        return len(self._runs) - len(self._staged)

    @property
    def staged(self) -> int:
        """The number of runs staged and not yet committed."""
        return len(self._staged)

    @property
    def predicate(self) -> RunPredicate | None:
        return self._predicate

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def stamp(self, run_id: str) -> int:
        """A number that changes whenever the run is applied; keys render caches."""
        return self._stamps.get(run_id, 0)

    def row(self, index: int) -> Run:
        """The run at a row of the filtered view."""
        return self._runs[self._view[index][2]]

    def row_id(self, index: int) -> str:
        return self._view[index][2]

    def rows(self, start: int, stop: int) -> list[Run]:
        runs = self._runs
        return [runs[key[2]] for key in self._view[start:stop]]

    def __iter__(self) -> Iterator[Run]:
        runs = self._runs
        return (runs[key[2]] for key in self._view)

    def index_of(self, run_id: str) -> int | None:
        """The row of a run in the filtered view, or None if it is not shown."""
        key = self._keys.get(run_id)
        if key is None:
            return None
        index = bisect_left(self._view, key)
        if index < len(self._view) and self._view[index] == key:
            return index
        return None

    def now_index(self, now: float) -> int:
        """The number of rows scheduled before ``now``: where the *now* line goes."""
        return bisect_left(self._view, (now,))

    def single_job(self) -> str | None:
        """The job id when every row in the view belongs to one job."""
        if len(self._view_jobs) == 1:
            return next(iter(self._view_jobs))
        return None

    def id_width(self) -> int:
        """The longest run id held (only grows), for the id column."""
        return self._id_width

    def job_width(self) -> int:
        """The longest job id in the view."""
        return max(map(len, self._view_jobs), default=0)

    def arg_widths(self) -> dict[str, int]:
        """Arg names in the view, in first-seen order, with their longest value."""
        if self._view_args is None:
            self._view_args = {}
            self._unwidened.clear()
            runs = self._runs
            _widen(self._view_args, (runs[key[2]] for key in self._view))
        elif self._unwidened:
            _widen(self._view_args, self._unwidened)
            self._unwidened.clear()
        return dict(self._view_args)

    # -- writing -------------------------------------------------------------------

    def apply(self, run: Run) -> bool:
        """Insert or replace one run. Returns whether it is in the filtered view."""
        self.commit()
        self.version += 1
        return self._apply_one(run)

    def apply_many(self, runs: Iterable[Run]) -> None:
        """Insert or replace many runs; a big batch is merged in (see the module doc)."""
        batch = runs if isinstance(runs, list) else list(runs)
        if not batch:
            return
        self.commit()
        self.version += 1
        if len(batch) <= _MERGE_BATCH:
            for run in batch:
                self._apply_one(run)
            return
        ids = [str(run["run_id"]) for run in batch]
        if self._all_new(ids):
            keys, shown, shown_runs = self._add_new(ids, batch)
            self._enter_view(shown_runs)
            self._order = _merged(self._order, keys)
            self._view = _merged(self._view, shown)
        else:
            self._merge(dict(zip(ids, batch)))  # a run given twice: its last

    def stage(self, runs: list[Run]) -> bool:
        """Runs of a load, shown from the next `commit` on. Their sort keys, dicts and
        filter are done now, page by page, while the view (its rows, `len`, `total`)
        stays as it is: a table's cursor and scroll stay true with no repaint per page.
        Runs the store holds already are applied at once instead (after a commit).
        Returns whether the view changed now."""
        ids = [str(run["run_id"]) for run in runs]
        if len(ids) <= _MERGE_BATCH or not self._all_new(ids):
            self.apply_many(runs)
            return bool(runs)
        self.version += 1
        keys, shown, shown_runs = self._add_new(ids, runs)
        self._staged += keys
        self._staged_shown += shown
        self._staged_jobs.update([run.get("job_id", "") for run in shown_runs])
        _widen(self._staged_args, shown_runs)
        return False

    def commit(self) -> bool:
        """Show the staged runs: one merge of sorted lists for every page staged (what
        they add to the aggregates was counted as each came). Returns whether there
        were any."""
        if not self._staged:
            return False
        self.version += 1
        view_jobs = self._view_jobs
        for job_id, n in self._staged_jobs.items():
            view_jobs[job_id] = view_jobs.get(job_id, 0) + n
        widths = self._view_args
        if widths is not None:  # else recomputed when asked, from the view
            for name, width in self._staged_args.items():
                if width > widths.get(name, -1):
                    widths[name] = width
        self._order = _merged(self._order, self._staged)
        self._view = _merged(self._view, self._staged_shown)
        self._unstage()
        return True

    def _unstage(self) -> None:
        self._staged, self._staged_shown = [], []
        self._staged_jobs, self._staged_args = Counter(), {}

    def _all_new(self, ids: list[str]) -> bool:
        """Whether none of these runs is held, and none is given twice."""
        return len(set(ids)) == len(ids) and not any(map(self._keys.__contains__, ids))

    def _add_new(self, ids: list[str], batch: list[Run],
                 ) -> tuple[list[SortKey], list[SortKey], list[Run]]:
        """The bulk path, runs new to the store into its dicts: returns their keys, those
        of the runs that pass the filter, and those runs (for the order and the view)."""
        keys = list(map(sort_key, batch))
        self._runs.update(zip(ids, batch))
        self._keys.update(zip(ids, keys))
        self._stamps.update(zip(ids, self._stamp_counter))
        self._id_width = max(self._id_width, max(map(len, ids)))
        predicate = self._predicate
        if predicate is None:
            return keys, keys[:], batch
        passes = list(map(predicate, batch))
        return keys, list(compress(keys, passes)), list(compress(batch, passes))

    def _merge(self, latest: dict[str, Run]) -> None:
        """A batch that replaces runs the store holds: each old one leaves first."""
        predicate = self._predicate
        replaced: set[SortKey] = set()
        added: list[SortKey] = []
        shown: list[SortKey] = []
        shown_runs: list[Run] = []
        for run_id, run in latest.items():
            key = sort_key(run)
            old_key = self._keys.get(run_id)
            if old_key is not None:
                replaced.add(old_key)
                old_run = self._runs[run_id]
                if predicate is None or predicate(old_run):
                    self._count_out(old_run)
            self._runs[run_id] = run
            self._keys[run_id] = key
            self._stamps[run_id] = next(self._stamp_counter)
            self._id_width = max(self._id_width, len(run_id))
            added.append(key)
            if predicate is None or predicate(run):
                shown.append(key)
                shown_runs.append(run)
        self._enter_view(shown_runs)
        if replaced:
            self._order = [k for k in self._order if k not in replaced]
            self._view = [k for k in self._view if k not in replaced]
        self._order = _merged(self._order, added)
        self._view = _merged(self._view, shown)

    def remove(self, run_id: str) -> None:
        self.commit()
        key = self._keys.pop(run_id, None)
        if key is None:
            return
        self.version += 1
        run = self._runs.pop(run_id)
        self._stamps.pop(run_id, None)
        self._discard(self._order, key)
        if self._discard(self._view, key):
            self._count_out(run)

    def clear(self) -> None:
        self.version += 1
        self._runs.clear()
        self._keys.clear()
        self._stamps.clear()
        self._order.clear()
        self._view.clear()
        self._view_jobs.clear()
        self._view_args = {}
        self._unwidened.clear()
        self._unstage()

    def set_predicate(self, predicate: RunPredicate | None) -> None:
        """Change the filter and recompute the view (None shows every run)."""
        self.commit()
        self.version += 1
        self._predicate = predicate
        self._refilter()

    # -- internals -----------------------------------------------------------------

    def _apply_one(self, run: Run) -> bool:
        run_id = str(run["run_id"])
        new_key = sort_key(run)
        old_key = self._keys.get(run_id)
        if old_key is not None:
            old_run = self._runs[run_id]
            if old_key != new_key:
                self._discard(self._order, old_key)
                insort(self._order, new_key)
            if self._discard(self._view, old_key):
                self._count_out(old_run)
        else:
            insort(self._order, new_key)
        self._runs[run_id] = run
        self._keys[run_id] = new_key
        self._stamps[run_id] = next(self._stamp_counter)
        self._id_width = max(self._id_width, len(run_id))
        if self._predicate is None or self._predicate(run):
            insort(self._view, new_key)
            self._count_in(run)
            return True
        return False

    @staticmethod
    def _discard(keys: list[SortKey], key: SortKey) -> bool:
        index = bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            del keys[index]
            return True
        return False

    def _refilter(self) -> None:
        runs = self._runs
        predicate = self._predicate
        if predicate is None:
            self._view = list(self._order)
        else:
            self._view = [key for key in self._order if predicate(runs[key[2]])]
        self._view_jobs = dict(Counter(runs[key[2]].get("job_id", "") for key in self._view))
        self._view_args = None
        self._unwidened.clear()

    def _count_in(self, run: Run) -> None:
        job_id = run.get("job_id", "")
        self._view_jobs[job_id] = self._view_jobs.get(job_id, 0) + 1
        if self._view_args is not None:
            self._unwidened.append(run)

    def _enter_view(self, runs: list[Run]) -> None:
        """Count runs that entered the view by job, and queue them for the arg widths."""
        view_jobs = self._view_jobs
        for job_id, n in Counter([run.get("job_id", "") for run in runs]).items():
            view_jobs[job_id] = view_jobs.get(job_id, 0) + n
        if self._view_args is not None:
            self._unwidened += runs

    def _count_out(self, run: Run) -> None:
        # Arg widths only grow until the next full refilter: columns that shrink
        # while the user watches would be more distracting than a little slack.
        job_id = run.get("job_id", "")
        remaining = self._view_jobs.get(job_id, 0) - 1
        if remaining > 0:
            self._view_jobs[job_id] = remaining
        else:
            self._view_jobs.pop(job_id, None)


def _widen(widths: dict[str, int], runs: Iterable[Run]) -> None:
    """Fold the args of ``runs`` into ``widths`` (arg name -> longest value)."""
    longest = widths.get
    for run in runs:
        args = run.get("args")
        if args:
            for name, value in args.items():
                width = len(value) if type(value) is str else len(str(value))
                if width > longest(name, -1):
                    widths[name] = width

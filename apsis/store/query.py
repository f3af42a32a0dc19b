"""The SQL of `Store.query_runs`, with an explicit choice of index.

SQLite has no statistics here (the store never runs ANALYZE, so plans do not change
under the daemon's feet), so the builder chooses: a list of run ids, else a selective
arg or label, else the job, else unfinished states, else plain time order.

The same builder serves PostgreSQL (`postgres=True`): the same filters and the same
choice of driving side filter, without index hints (its planner has statistics), with
arrays for lists and `$n` placeholders (`numbered`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apsis.model.states import UNFINISHED
from apsis.store.keys import decode_cursor, json_list, time_key

# A side filter (arg or label) matching at most this many runs drives the query from its
# own index; one matching more is checked run by run along the time-ordered scan.
SELECTIVE = 5000

# Runs of several jobs (a folder) are read job by job along the job index, each read
# stopping at the page's size, and the pieces merged: a page of a folder costs a few index
# probes per job, however many runs the jobs have.  Past this many jobs one time-ordered
# scan checks the list run by run instead (such a folder is a good share of all runs).
JOBS_APART = 200

_UNFINISHED = frozenset(s.value for s in UNFINISHED)


class RunQuery:
    """One query: filters are added, then `finish` picks the index to walk."""

    def __init__(self, limit: int, *, postgres: bool = False) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.limit = limit
        self.postgres = postgres
        self.where: list[str] = []
        self.params: list[Any] = []
        self.index = "INDEXED BY runs_time"
        self.jobs: list[str] = []  # each read apart, along the job index
        self.unfinished_only = False
        self.driver: int | None = None

    def add_filters(
        self,
        *,
        job_id: str | Sequence[str] | None,
        states: list[str] | None,
        since: str | dt.datetime | None,
        until: str | dt.datetime | None,
        cursor: str | None,
    ) -> None:
        if isinstance(job_id, str):
            self.jobs = [job_id]
        elif job_id is not None:
            jobs = sorted(set(job_id))
            if len(jobs) <= JOBS_APART:
                self.jobs = jobs or [""]  # no job at all: no run (no job is named "")
            else:
                self.where.append(self.in_list("job_id", jobs))
        if states is not None:
            self.where.append(self.in_list("state", states))
            self.unfinished_only = set(states) <= _UNFINISHED
        if since is not None:
            self.where.append("sort_time >= ?")
            self.params.append(time_key(since))
        if until is not None:
            self.where.append("sort_time < ?")
            self.params.append(time_key(until))
        if cursor is not None:
            sort_time, num = decode_cursor(cursor)
            self.where.append("(sort_time, run_num) < (?, ?)")
            self.params.extend([sort_time, num])

    @staticmethod
    def side_filters(
        labels: str | Iterable[str] | None, args: Mapping[str, str] | None
    ) -> list[tuple[str, list[Any]]]:
        """(SELECT run_num ..., params) for each label and arg filter."""
        side: list[tuple[str, list[Any]]] = []
        if isinstance(labels, str):
            labels = [labels]
        for label in labels or ():
            side.append(("SELECT run_num FROM run_labels WHERE label = ?", [label]))
        for name, value in (args or {}).items():
            side.append(
                ("SELECT run_num FROM run_args WHERE name = ? AND value = ?", [name, str(value)])
            )
        return side

    def choose_driver(self, side: list[tuple[str, list[Any]]], counts: list[int]) -> None:
        best = min(range(len(side)), key=lambda i: counts[i])
        if counts[best] <= SELECTIVE:
            self.driver = best

    def finish(self, nums: list[int] | None, side: list[tuple[str, list[Any]]]) -> None:
        if nums is not None:
            self.where.append(self.in_list("run_num", nums))
            self.index = "NOT INDEXED"  # still looks rows up by rowid
        elif self.driver is not None:
            self.index = "NOT INDEXED"
        elif self.jobs:
            self.index = "INDEXED BY runs_job_time"
        elif self.unfinished_only:
            self.index = "INDEXED BY runs_state_time"
        for i, (sql, params) in enumerate(side):
            if i == self.driver:
                self.where.append(f"run_num IN ({sql})")
            else:
                # Checked row by row along the scan: one primary-key probe each.
                table, _, cond = sql.removeprefix("SELECT run_num FROM ").partition(" WHERE ")
                self.where.append(
                    f"EXISTS (SELECT 1 FROM {table} s WHERE s.run_num = runs.run_num AND {cond})"
                )
            self.params.extend(params)
        if len(self.jobs) > 1:  # a term per job, each with the page's filters, then the merge
            shared, self.params = self.params, []
            for job in self.jobs:
                self.params += [job, *shared, self.limit + 1]
        elif self.jobs:
            self.params.insert(0, self.jobs[0])
        self.params.append(self.limit + 1)

    def in_list(self, column: str, values: list[Any]) -> str:
        """`column` is one of `values`, with the list as a single parameter."""
        if self.postgres:
            self.params.append(values)
            return f"{column} = ANY(?)"
        self.params.append(json_list(values))
        return f"{column} IN (SELECT value FROM json_each(?))"

    def sql(self) -> str:
        where = (["job_id = ?"] if self.jobs else []) + self.where
        index = "" if self.postgres else self.index
        sql = (
            f"SELECT sort_time, run_num, run FROM runs {index} "
            f"{'WHERE ' + ' AND '.join(where) if where else ''} {_NEWEST_FIRST}"
        )
        if len(self.jobs) > 1:
            terms = " UNION ALL ".join(f"SELECT * FROM ({sql}) AS job{i}"
                                       for i in range(len(self.jobs)))
            sql = f"SELECT sort_time, run_num, run FROM ({terms}) AS jobs {_NEWEST_FIRST}"
        return numbered(sql) if self.postgres else sql


_NEWEST_FIRST = "ORDER BY sort_time DESC, run_num DESC LIMIT ?"


def numbered(sql: str) -> str:
    """`?` placeholders as PostgreSQL's `$1, $2...` (the SQL here never holds a literal `?`)."""
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], 1)) + parts[-1]

"""Fuzzy job ids, client-side only: `dat/lo pri` → `data/load prices`.

A job id is split into path segments on `/` and each segment into words on spaces,
`-` and `_`.  A typed id matches a job when it has as many segments and, segment by
segment, each typed word is a case-insensitive prefix of the job's word at the same
place (a segment may leave off trailing words).  The API never does this: scripts
that send an exact id get exactly that job.

Only an exact id wins over other matches: `match pre` with jobs `match prefix` and
`match prefix suffix` is ambiguous (SPEC §1.4), because running the wrong one of two
similar jobs is worse than asking the user to type one more word.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORD_SEP = re.compile(r"[\s\-_]+")


def _split(job_id: str) -> list[list[str]]:
    return [[w for w in _WORD_SEP.split(seg.lower()) if w] for seg in job_id.strip("/").split("/")]


def _match(typed: list[list[str]], words: list[list[str]]) -> tuple[bool, bool]:
    """(matches, every segment has as many words as typed)."""
    if len(typed) != len(words):
        return False, False
    complete = True
    for t_seg, j_seg in zip(typed, words):
        if len(t_seg) > len(j_seg):
            return False, False
        if not all(w.startswith(t) for t, w in zip(t_seg, j_seg)):
            return False, False
        complete = complete and len(t_seg) == len(j_seg)
    return True, complete


def fuzzy_candidates(typed: str, job_ids: Iterable[str]) -> list[str]:
    """The job ids `typed` may mean; one element means no ambiguity.

    An exact id wins over everything.  Otherwise every id it abbreviates is a
    candidate, those matching word for word first (`dat/lo`: `data/load`, then
    `data/load prices`), so that a listing of an ambiguity shows the likeliest first.
    """
    ids = list(job_ids)
    if typed in ids:
        return [typed]
    t = _split(typed)
    if not any(t):
        return []
    complete: list[str] = []
    partial: list[str] = []
    for job_id in ids:
        ok, full = _match(t, _split(job_id))
        if ok:
            (complete if full else partial).append(job_id)
    return sorted(complete) + sorted(partial)


def is_glob(pattern: str) -> bool:
    return any(c in pattern for c in "*?[")


def job_matches_pattern(pattern: str, job_id: str) -> bool:
    """`apsis jobs PATTERN`: a glob if it has `*?[`, else a substring or a fuzzy prefix."""
    if is_glob(pattern):
        from fnmatch import fnmatchcase

        return fnmatchcase(job_id.lower(), pattern.lower())
    if pattern.lower() in job_id.lower():
        return True
    t = _split(pattern)
    return any(t) and _match(t, _split(job_id))[0]

"""Turning what the user typed into exact job ids (fuzzy, client-side) and run ids."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING, Any

from .common import UserError
from .exitcodes import ExitStatus
from .fuzzy import fuzzy_candidates

if TYPE_CHECKING:
    from apsis.client import Client

MAX_CANDIDATES_SHOWN = 10


class FolderError(UserError):
    """A job was asked for and a folder of jobs named."""


async def resolve_job(client: Client, typed: str) -> dict[str, Any]:
    """The job `typed` names: its exact id first (one request), else a unique fuzzy match."""
    from apsis.client import ApsisNotFound

    try:
        return await client.job(typed)
    except ApsisNotFound:
        pass
    jobs = await client.jobs()
    by_id = {j["job_id"]: j for j in jobs}
    inside = _inside(typed, by_id)
    if inside and typed.rstrip("/") not in by_id:
        shown = inside[:MAX_CANDIDATES_SHOWN]
        more = len(inside) - len(shown)
        raise FolderError(f"{typed!r} is a folder of {len(inside)} job(s): " + ", ".join(shown)
                        + (f" and {more} more" if more else ""), "name one of them",
                        ExitStatus.USAGE)
    candidates = fuzzy_candidates(typed, by_id)
    if not candidates:
        raise UserError(f"no job matches {typed!r}", _no_match_hint(typed, by_id),
                        ExitStatus.USAGE)
    if len(candidates) > 1:
        shown = candidates[:MAX_CANDIDATES_SHOWN]
        more = len(candidates) - len(shown)
        listing = ", ".join(shown) + (f" and {more} more" if more else "")
        raise UserError(f"{typed!r} is ambiguous: it matches {listing}",
                        "type more of the id, or the exact id", ExitStatus.USAGE)
    # The listing carries no `source` (the file as written): the job itself, as if
    # named exactly, so an abbreviation shows the same thing.
    return await client.job(candidates[0])


def _no_match_hint(typed: str, job_ids: Collection[str]) -> str:
    """A word that abbreviates a folder (`o` for `ops/`) names no job, as a job id is
    matched segment by segment: say which folder it may mean and what a job there is."""
    folders = fuzzy_candidates(typed, {j.split("/", 1)[0] for j in job_ids if "/" in j})
    if not folders:
        return "`apsis jobs` lists the jobs; words may be abbreviated: mar/lo"
    folder = folders[0]
    example = min(j for j in job_ids if j.startswith(folder + "/"))
    return (f"{typed!r} abbreviates the folder {folder}/: name a job in it, like "
            f"{example!r}, or `apsis jobs {folder}/` to list them")


def _inside(typed: str, job_ids: Any) -> list[str]:
    """The jobs under the folder `typed` (`ops`, `ops/`, `/ops`), sorted."""
    folder = typed.strip("/") + "/"
    return sorted(j for j in job_ids if j.startswith(folder))


def is_folder_term(typed: str) -> bool:
    """`ops/` or `/ops`: a folder as the TUI's `/path` term names one, never a fuzzy id."""
    return typed.startswith("/") or typed.endswith("/")


async def resolve_jobs(client: Client, typed: str) -> list[str]:
    """The exact ids `typed` names as a run filter: one job (fuzzy, as `resolve_job`), or
    every job under a folder (`ops/`, `/ops`, or `ops` when no job is called that)."""
    if is_folder_term(typed):
        path = typed.strip("/")
        ids = [j["job_id"] for j in await client.jobs()]
        found = ([path] if path in ids else []) + _inside(path, ids)
        if not found:
            raise UserError(f"no job in folder {path!r}", "`apsis jobs` lists the jobs",
                            ExitStatus.USAGE)
        return found
    try:
        return [(await resolve_job(client, typed))["job_id"]]
    except FolderError:
        return _inside(typed, [j["job_id"] for j in await client.jobs()])

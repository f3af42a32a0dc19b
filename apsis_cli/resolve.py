"""Turning what the user typed into exact job ids (fuzzy, client-side) and run ids."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .common import UserError
from .exitcodes import ExitStatus
from .fuzzy import fuzzy_candidates

if TYPE_CHECKING:
    from apsis.client import Client

MAX_CANDIDATES_SHOWN = 10


async def resolve_job(client: Client, typed: str) -> dict[str, Any]:
    """The job `typed` names: its exact id first (one request), else a unique fuzzy match."""
    from apsis.client import ApsisNotFound

    try:
        return await client.job(typed)
    except ApsisNotFound:
        pass
    jobs = await client.jobs()
    by_id = {j["job_id"]: j for j in jobs}
    folder = typed.rstrip("/") + "/"
    inside = sorted(j for j in by_id if j.startswith(folder))
    if inside and typed.rstrip("/") not in by_id:
        shown = inside[:MAX_CANDIDATES_SHOWN]
        more = len(inside) - len(shown)
        raise UserError(f"{typed!r} is a folder of {len(inside)} job(s): " + ", ".join(shown)
                        + (f" and {more} more" if more else ""), "name one of them",
                        ExitStatus.USAGE)
    candidates = fuzzy_candidates(typed, by_id)
    if not candidates:
        raise UserError(f"no job matches {typed!r}",
                        "`apsis jobs` lists the jobs; words may be abbreviated: mar/lo",
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

"""Shell completion of job ids and run ids, asking the daemon briefly.

Completion must never hang a shell or print a traceback into it: one short attempt
(no retrying), and any failure completes nothing.
"""

from __future__ import annotations

import asyncio
from typing import Any

import click

from .connect import make_client, obj_of
from .fuzzy import fuzzy_candidates

TIMEOUT = 1.5
RECENT_RUNS = 200


def _ask(ctx: click.Context, fn: Any) -> Any:
    obj = obj_of(ctx)

    async def main() -> Any:
        async with make_client(obj, timeout=TIMEOUT, retry_for=0) as client:
            return await asyncio.wait_for(fn(client), TIMEOUT)

    return asyncio.run(main())


def complete_job_ids(ctx: click.Context, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        jobs = _ask(ctx, lambda c: c.jobs())
    except Exception:  # noqa: BLE001 - completion fails silently
        return []
    ids = sorted(j.get("job_id", "") for j in jobs)
    matches = [i for i in ids if i.startswith(incomplete)]
    if not matches and incomplete:
        matches = fuzzy_candidates(incomplete, ids)
    return [CompletionItem(i) for i in matches]


def complete_run_ids(ctx: click.Context, incomplete: str) -> list[Any]:
    from click.shell_completion import CompletionItem

    try:
        runs = _ask(ctx, _recent_runs)
    except Exception:  # noqa: BLE001 - completion fails silently
        return []
    typed = incomplete if incomplete.startswith("r") or not incomplete else "r" + incomplete
    items = []
    for run in runs:
        run_id = run.get("run_id", "")
        if run_id.startswith(typed):
            items.append(CompletionItem(run_id, help=f"{run.get('state')} {run.get('job_id')}"))
    return items


async def _recent_runs(client: Any) -> list[dict[str, Any]]:
    """The runs one names: those under way (or waiting) first, then the newest that are due (not the
    runs schedules have created for tomorrow, which the newest by schedule would be)."""
    import datetime as dt

    from apsis.present import ACTIVE_STATES

    active, recent = await asyncio.gather(
        client.runs(states=sorted(ACTIVE_STATES | {"waiting"}), limit=RECENT_RUNS, summary=True),
        client.runs(until=dt.datetime.now(dt.UTC), limit=RECENT_RUNS, summary=True))
    seen: dict[str, dict[str, Any]] = {}
    for run in (active.get("runs") or []) + (recent.get("runs") or []):
        seen.setdefault(run.get("run_id", ""), run)
    return list(seen.values())[:RECENT_RUNS]

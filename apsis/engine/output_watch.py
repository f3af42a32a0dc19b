"""`output_appended` events as running programs' spools grow.

One polling loop per kind of spool, at that kind's pace: a stat per local output every
half second; a zero-byte `read` per remote output every second, each bounded by a
timeout, in a loop of its own so a slow host never delays local events. Watching
never connects to a host: reattaching does. The last length reported per output is
kept, so a run that finishes between two looks still tells clients its final lengths
(`final_growth`, published with its final transition).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from .spools import Spool

log = logging.getLogger("apsis.runner")

REMOTE_POLL_TIMEOUT = 5.0  # a slow host delays only its own output events

Emit = Callable[[list[dict[str, Any]]], Awaitable[None]]


class OutputWatch:
    def __init__(self, spools: Callable[[], Iterable[Spool]],
                 live_job: Callable[[str], str | None], emit: Emit) -> None:
        self._spools = spools  # the spools of the runs whose process is running now
        self._live_job = live_job  # a live run's job id; None once it has finished
        self._emit = emit
        self._lengths: dict[str, dict[str, int]] = {}

    def forget(self, run_id: str) -> None:
        self._lengths.pop(run_id, None)

    def final_growth(self, run_id: str, job_id: str,
                     outputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`output_appended` for the bytes not reported yet, given the stored lengths."""
        seen = self._lengths.get(run_id, {})
        return [{"type": "output_appended", "run_id": run_id, "job_id": job_id,
                 "output_id": o["output_id"], "length": o["length"]}
                for o in outputs if (o.get("length") or 0) > seen.get(o["output_id"], 0)]

    async def watch(self, kind: type[Spool]) -> None:
        """Polls the spools of one kind until cancelled."""
        while True:
            await asyncio.sleep(kind.POLL_SECONDS)
            asks = [(spool, output_id) for spool in self._spools() if isinstance(spool, kind)
                    for output_id in spool.output_ids]
            if not asks:
                continue

            async def length(spool: Spool, output_id: str) -> int | None:
                try:
                    return await asyncio.wait_for(spool.length(output_id, connect=False),
                                                  REMOTE_POLL_TIMEOUT)
                except TimeoutError:
                    return None

            lengths = await asyncio.gather(*(length(s, o) for s, o in asks))
            await self._publish([(s.run_id, o, n) for (s, o), n in zip(asks, lengths)
                                 if n is not None])

    async def _publish(self, sizes: list[tuple[str, str, int]]) -> None:
        """One `output_appended` per output whose length changed since the last look."""
        events = []
        for run_id, output_id, length in sizes:
            job_id = self._live_job(run_id)
            if job_id is None:
                continue  # finished meanwhile: its final length is in its run
            seen = self._lengths.setdefault(run_id, {})
            if length != seen.get(output_id, 0):
                seen[output_id] = length
                events.append({"type": "output_appended", "run_id": run_id, "job_id": job_id,
                               "output_id": output_id, "length": length})
        if events:
            try:
                await self._emit(events)
            except Exception:
                log.exception("could not record output events")

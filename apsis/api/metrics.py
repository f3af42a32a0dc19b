"""GET /metrics: Prometheus text, every name prefixed `apsis_`.

Counts that live in the database (runs by state) are read when scraped; latencies
(schedule lag, event-loop lag) are observed as they happen.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from ..lib.timefmt import parse_time
from .params import Query
from .routes import endpoint

if TYPE_CHECKING:
    from .app import Api

log = logging.getLogger("apsis.api")

LOOP_PROBE_SECONDS = 0.25


class Metrics:
    def __init__(self, api: Api) -> None:
        disable_created_metrics()  # `_created` series only add noise to a scrape
        self.api = api
        self.registry = CollectorRegistry(auto_describe=False)
        self.schedule_lag = Histogram(
            "apsis_schedule_lag_seconds",
            "How late runs start after their schedule time (runs that did not wait on conditions).",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 3600),
            registry=self.registry)
        self.loop_lag = Histogram(
            "apsis_event_loop_lag_seconds",
            "How late the daemon's event loop wakes a timer: its latency for everything.",
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry)
        self._runs_by_state: dict[str, int] = {}
        self.registry.register(_Snapshot(self))

    def on_event(self, event: dict[str, Any]) -> None:
        """A bus listener: a run that goes from scheduled to starting observes its lag."""
        if event.get("type") != "run_transition" or event.get("to") != "starting":
            return
        if event.get("from") != "scheduled":
            return
        try:
            lag = (parse_time(event["ts"]) - parse_time(event["run"]["times"]["schedule"])).total_seconds()
        except (KeyError, TypeError, ValueError):
            return
        self.schedule_lag.observe(max(lag, 0.0))

    async def probe_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            before = loop.time()
            await asyncio.sleep(LOOP_PROBE_SECONDS)
            self.loop_lag.observe(max(loop.time() - before - LOOP_PROBE_SECONDS, 0.0))

    async def render(self) -> bytes:
        self._runs_by_state = await self.api.service.runs_by_state()
        return generate_latest(self.registry)


class _Snapshot:
    """Gauges read at scrape time from the engine and the last database counts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        api = self.metrics.api
        service = api.service
        counts = service.counts()
        runs = GaugeMetricFamily("apsis_runs", "Runs in the database, by state.", labels=["state"])
        for state, count in sorted(self.metrics._runs_by_state.items()):
            runs.add_metric([state], count)
        yield runs
        yield GaugeMetricFamily("apsis_unfinished_runs", "Runs the engine holds in memory.",
                                value=counts["unfinished_runs"])
        yield GaugeMetricFamily("apsis_jobs", "Jobs loaded from the jobs directory.",
                                value=counts["jobs"])
        commit = GaugeMetricFamily("apsis_db_commit_seconds",
                                   "Database commit time over the recent commits.",
                                   labels=["quantile"])
        for q, seconds in service.commit_quantiles().items():
            commit.add_metric([str(q)], seconds)
        yield commit
        yield GaugeMetricFamily("apsis_events_last_seq", "Seq of the last event published.",
                                value=counts["last_seq"])
        yield GaugeMetricFamily("apsis_event_subscribers", "Live event subscribers (websockets, waiter).",
                                value=counts["event_subscribers"])
        yield CounterMetricFamily("apsis_event_clients_cut_off",
                                  "Event stream clients closed because they fell behind.",
                                  value=api.events_cut_off)
        yield GaugeMetricFamily("apsis_leader", "1 while this daemon leads, 0 on a standby.",
                                value=1 if service.role()["role"] == "leader" else 0)
        yield CounterMetricFamily("apsis_failovers", "Times this daemon took over as leader.",
                                  value=service.failovers)
        started = service.started_at
        yield GaugeMetricFamily("apsis_start_time_seconds", "When the daemon started (Unix time).",
                                value=started.timestamp() if isinstance(started, dt.datetime) else 0)


@endpoint("read")
async def metrics_route(api: Api, request: Request) -> Response:
    Query(request, ())
    return Response(await api.metrics.render(), media_type=CONTENT_TYPE_LATEST)

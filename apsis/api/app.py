"""The ASGI app of the daemon: Starlette routes under `/api/v1`."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..engine.service import Service
from . import routes as r
from .auth import Authorizer, redact_tokens_in_logs
from .errors import ApiError, api_error_handler, http_exception_handler, internal_error_handler
from .events import EventLog, events_ws, queue_size
from .metrics import Metrics, metrics_route
from .openapi import openapi_document
from .output import output_ws

log = logging.getLogger("apsis.api")


class Api:
    """What every handler needs: the daemon's service, the token check, shared caches and
    metrics."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.auth = Authorizer(getattr(service.config, "tokens", None) or {})
        self.queue_size = queue_size()
        self.event_log = EventLog(service.last_seq)
        self.events_cut_off = 0
        self.metrics = Metrics(self)
        self._openapi: dict[str, Any] | None = None
        service.listen(self.metrics.on_event)
        service.listen_encoded(self.event_log.append)

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = openapi_document()
        return self._openapi


async def openapi_route(request: Request) -> Response:
    return JSONResponse(request.app.state.api.openapi())


def api_routes() -> list[Any]:
    return [
        Route("/alive", r.alive, methods=["GET"]),
        Route("/openapi.json", openapi_route, methods=["GET"]),
        Route("/metrics", metrics_route, methods=["GET"]),
        Route("/jobs", r.list_jobs, methods=["GET"]),
        Route("/jobs/{job_id:path}", r.get_job, methods=["GET"]),
        Route("/runs", r.runs_collection, methods=["GET", "POST"]),
        Route("/runs/{run_id}", r.get_run, methods=["GET"]),
        Route("/runs/{run_id}/log", r.run_log, methods=["GET"]),
        Route("/runs/{run_id}/outputs", r.run_outputs, methods=["GET"]),
        Route("/runs/{run_id}/output/{output_id}", r.output_range, methods=["GET"]),
        WebSocketRoute("/runs/{run_id}/output/{output_id}", output_ws),
        Route("/runs/{run_id}/skip", r.op_skip, methods=["POST"]),
        Route("/runs/{run_id}/start", r.op_start, methods=["POST"]),
        Route("/runs/{run_id}/stop", r.op_stop, methods=["POST"]),
        Route("/runs/{run_id}/rerun", r.op_rerun, methods=["POST"]),
        Route("/runs/{run_id}/signal/{signal}", r.op_signal, methods=["POST"]),
        Route("/runs/{run_id}/mark/{state}", r.op_mark, methods=["POST"]),
        Route("/control/reload", r.control_reload, methods=["POST"]),
        Route("/control/shutdown", r.control_shutdown, methods=["POST"]),
        Route("/control/archive", r.control_archive, methods=["POST"]),
        Route("/control/stats", r.control_stats, methods=["GET"]),
        Route("/events", r.websocket_only, methods=["GET"]),
        WebSocketRoute("/events", events_ws),
    ]


class AnswerInternalErrors:
    """Answers a handler's crash with the usual JSON 500 and keeps the connection open.

    Starlette's own last-resort handler re-raises after answering, and uvicorn then
    closes the keep-alive connection: one failed request would cost the client its
    connection and whatever it had pipelined on it.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, send_tracked)
        except Exception as exc:
            if started:
                raise  # half a response: only closing the connection can tell the client
            response = await internal_error_handler(Request(scope, receive), exc)
            await response(scope, receive, send)


def create_app(service: Service) -> Starlette:
    """The API app for a started engine's service (call it inside the daemon's event loop)."""
    api = Api(service)
    redact_tokens_in_logs()
    app = Starlette(
        routes=[Mount("/api/v1", routes=api_routes())],
        exception_handlers={HTTPException: http_exception_handler, ApiError: api_error_handler},
        middleware=[Middleware(AnswerInternalErrors)],
    )
    app.state.api = api
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass  # built outside a loop (a test of the routes): no latency probe
    else:
        service.spawn(api.metrics.probe_loop(), "loop-lag")
    return app

"""API errors: one JSON shape, `{"error": {"code", "message"}}`, with the right status.

Handlers raise `ApiError`; `error_for` turns the engine's and the store's refusals
into one, so bad input is a 4xx with a message, never a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

log = logging.getLogger("apsis.api")

_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 413: "too_large", 422: "invalid",
               426: "upgrade_required", 507: "disk_full"}


class ApiError(Exception):
    """A request the API refuses: status, a short machine code and a message for people."""

    def __init__(self, status: int, code: str, message: str,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(status: int, code: str, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status,
                        headers=headers)


def error_for(exc: BaseException, request: Request | None = None) -> ApiError | None:
    """The API error for an exception the engine or store raises on bad input, else None.

    The status is chosen here, by the error's type: the engine knows nothing of HTTP.
    A write to a standby is redirected (307) to the same path on the leader, if known.
    """
    from ..engine.errors import (Conflict, DiskFull, EngineError, Invalid, NotFound, NotLeader,
                                 NotRecorded, Unavailable)
    from ..model.states import TransitionError
    from ..store.errors import DiskFullError, InvalidCursorError, UnknownRunError

    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, NotLeader) and exc.leader and request is not None:
        target = exc.leader.rstrip("/") + request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return ApiError(307, exc.code, exc.message, {"Location": target})
    if isinstance(exc, EngineError):
        status = {NotFound: 404, Invalid: 422, Conflict: 409, Unavailable: 503, NotLeader: 503,
                  NotRecorded: 500, DiskFull: 507}.get(type(exc), 422)
        return ApiError(status, exc.code, exc.message)
    if isinstance(exc, DiskFullError):  # a write outside a run's change: new run ids
        return ApiError(507, "disk_full", str(exc))
    if isinstance(exc, TransitionError):
        return ApiError(409, "bad_state", str(exc))
    if isinstance(exc, InvalidCursorError):
        return ApiError(400, "bad_cursor", str(exc))
    if isinstance(exc, UnknownRunError):
        return ApiError(404, "unknown_run", str(exc))
    return None


async def http_exception_handler(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (no such route, wrong method) in our error shape."""
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code
    if exc.status_code == 404:
        message = f"no such API path: {request.url.path}"
    elif exc.status_code == 405:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, code, message, dict(exc.headers or {}))


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    """A bug: logged with its traceback; the client gets a 500 in the usual shape."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal", f"internal error: {type(exc).__name__}; see the daemon's log")


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def describe(value: Any) -> str:
    """A short type name for messages about wrong JSON types."""
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number", type(None): "null"}.get(type(value), type(value).__name__)

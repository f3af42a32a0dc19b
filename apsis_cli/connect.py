"""Talking to the daemon from a command: one client, API errors turned into user errors.

`call(ctx, fn)` runs `await fn(client)` on a fresh event loop, `get_now(obj, path)`
makes one plain GET without one (a one-shot listing), and both map what can go
wrong (daemon unreachable, unknown run or job, a refused operation) to one line on
stderr with a hint and the exit code SPEC §1.4 promises.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .common import UserError
from .exitcodes import ExitStatus

if TYPE_CHECKING:
    from apsis.client import Client

T = TypeVar("T")

DEFAULT_RETRY_FOR = 30.0


def make_client(obj: dict[str, Any], *, timeout: float = 30.0,
                retry_for: float | None = None) -> Client:
    """A client for the daemons named by the global --url (one URL or several, comma
    separated), --token and --retry-for."""
    from apsis.client import Client

    return Client(obj.get("url"), obj.get("token"), timeout=timeout,
                  retry_for=obj.get("retry_for", DEFAULT_RETRY_FOR) if retry_for is None else retry_for,
                  on_switch=note_switch)


def note_switch(before: str, now: str) -> None:
    """One line on a terminal's stderr when a command goes on with another daemon (the
    one it was on stopped answering); nothing when stderr is a pipe or a file."""
    import sys

    if sys.stderr.isatty():
        # \r and erase: a status line (`apsis wait`) is redrawn after it.
        sys.stderr.write(f"\r\x1b[K{before} stopped answering: going on with {now}\n")
        sys.stderr.flush()


def call(obj: dict[str, Any], fn: Callable[[Client], Awaitable[T]], **client_kw: Any) -> T:
    """Runs `fn(client)` to completion; API failures become `UserError`s."""
    import asyncio

    async def main() -> T:
        async with make_client(obj, **client_kw) as client:
            return await fn(client)

    try:
        return asyncio.run(main())
    except Exception as exc:
        if is_api_error(exc):
            raise translate(exc, obj) from None
        raise


def get_now(obj: dict[str, Any], path: str, params: Any = None) -> Any:
    """The JSON answer of one GET, without an event loop (`Client.get_now`)."""
    try:
        return make_client(obj).get_now(path, params)
    except Exception as exc:
        if is_api_error(exc):
            raise translate(exc, obj) from None
        raise


def is_api_error(exc: BaseException) -> bool:
    try:
        from apsis.client import ApsisError
    except ImportError:  # pragma: no cover - the client is part of the package
        return False
    return isinstance(exc, ApsisError)


def translate(exc: BaseException, obj: dict[str, Any]) -> UserError:
    """The user error (message, hint, exit code) for an API error."""
    from apsis.client import ApsisNotFound, ApsisUnavailable

    message = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, ApsisUnavailable) and getattr(exc, "code", None) == "tls":
        return UserError(message, "set APSIS_CA to the PEM file of the CA (or the self-signed "
                         "certificate) the daemon's api.tls uses", ExitStatus.UNAVAILABLE)
    if isinstance(exc, ApsisUnavailable):
        url = obj.get("url") or "the daemon"
        if url not in message and not message.startswith("no daemon answered"):
            message = f"cannot reach the Apsis daemon at {url}: {message}"
        return UserError(message, "is `apsisctl serve` running there? set --url or APSIS_URL "
                         "(several daemons: a comma-separated list)", ExitStatus.UNAVAILABLE)
    if getattr(exc, "code", None) == "not_apsis":
        return UserError(f"not an Apsis daemon at {obj.get('url') or 'the URL'} (it answered {message})",
                         "set --url or APSIS_URL to the daemon's URL (`make run` prints it)",
                         ExitStatus.UNAVAILABLE)
    if getattr(exc, "code", None) == "bad_url":
        return UserError(message, "set --url or APSIS_URL", ExitStatus.USAGE)
    if isinstance(exc, ApsisNotFound):
        return UserError(message, "check the id: `apsis runs` and `apsis jobs` list them",
                         ExitStatus.USAGE)
    status = getattr(exc, "status", None)
    if status in (401, 403):
        return UserError(message, "pass a token with the right role: --token or APSIS_TOKEN",
                         ExitStatus.USAGE)
    if status in (400, 422):
        ctx = click.get_current_context(silent=True)
        return UserError(message, f"see '{ctx.command_path} --help'" if ctx else None,
                         ExitStatus.USAGE)
    if status == 409:
        return UserError(message, "`apsis show RUN` shows its state", ExitStatus.FAILURE)
    return UserError(message, None, ExitStatus.FAILURE)


def obj_of(ctx: click.Context) -> dict[str, Any]:
    """The global options, also while completing (when the group callback has not run)."""
    root = ctx.find_root()
    if isinstance(root.obj, dict):
        return root.obj
    params = root.params
    return {"url": params.get("url"), "token": params.get("token"),
            "retry_for": DEFAULT_RETRY_FOR}

"""The HTTP and websocket API of the daemon (SPEC §1.6, §1.7), on Starlette and uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette


def create_app(engine: Any) -> Starlette:
    from .app import create_app as build

    return build(engine)


__all__ = ["create_app"]

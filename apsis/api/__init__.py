"""The HTTP and websocket API of the daemon (SPEC §1.6, §1.7), on Starlette and uvicorn."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from ..engine.service import Service


def create_app(service: Service) -> Starlette:
    from .app import create_app as build

    return build(service)


__all__ = ["create_app"]

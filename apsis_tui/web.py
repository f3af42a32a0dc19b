"""`apsis tui --web`: the same TUI served to a browser by textual-serve, on loopback only.

textual-serve starts one `apsis tui` process per browser tab, under Textual's web driver,
and relays its screen over a websocket to xterm.js in the page. That child finds the
daemon through APSIS_URL and APSIS_TOKEN in the environment it inherits from here, so the
token is never on a command line (`ps` shows command lines to every user).

The page has no login of its own: whoever can open it acts with this token. Hence the
server listens on 127.0.0.1 only; to reach it from another machine, forward the port
over ssh (`ssh -L 8000:127.0.0.1:8000 host`).
"""

from __future__ import annotations

import logging
import os
import shlex
import socket
import sys

from aiohttp import web
from textual_serve.server import Server

HOST = "127.0.0.1"


class _ApsisServer(Server):
    """textual-serve's server, announcing the URL to open in one line instead of a banner,
    and logging problems only (not every request)."""

    def initialize_logging(self) -> None:
        logging.basicConfig(level=logging.WARNING, format="apsis tui --web: %(message)s")

    async def on_startup(self, app: web.Application) -> None:
        print(f"Apsis TUI for {os.environ['APSIS_URL']}: open {self.public_url} "
              "in a browser (Ctrl-C stops)", flush=True)


def check_port_free(port: int) -> None:
    """Raise OSError now if 127.0.0.1:PORT is taken, before anything is announced."""
    with socket.socket() as sock:
        sock.bind((HOST, port))


def serve_web(url: str, token: str | None, port: int) -> None:
    """Serve the TUI on http://127.0.0.1:PORT until interrupted; each tab talks to `url`."""
    check_port_free(port)
    os.environ["APSIS_URL"] = url
    if token:
        os.environ["APSIS_TOKEN"] = token
    else:
        os.environ.pop("APSIS_TOKEN", None)
    command = shlex.join([sys.executable, "-m", "apsis_cli.apsis", "tui"])
    _ApsisServer(command, host=HOST, port=port, title="Apsis").serve()

"""Free loopback ports for the servers tests start, never the same in two xdist workers.

A port is free when asked for and taken only when the server binds it, a second or more
later: two workers could be handed the same one in between, and a test would then talk
to another test's daemon. Each worker takes only ports of its own residue modulo the
number of workers, so that two workers never pick the same port.
"""

from __future__ import annotations

import os
import socket


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, this worker's own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    mine = int(worker[2:]) % count if worker.startswith("gw") and worker[2:].isdigit() else 0
    for _ in range(1000):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port % count == mine:
            return port
    raise RuntimeError(f"no free port of residue {mine} modulo {count} in 1000 tries")

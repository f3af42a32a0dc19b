"""Free loopback ports for the servers tests start, never the same in two xdist workers.

A port is free when asked for and taken only when the server binds it, a second or more
later: two workers could be handed the same one in between, and a test would then talk
to another test's daemon. Each worker takes only ports of its own residue modulo the
number of workers, so that two workers never pick the same port.  Ports are drawn
below the kernel's ephemeral range: there no outgoing connection takes one meanwhile,
and Linux's `bind(port 0)` hands out only odd ports, which left a second worker of two
with none.
"""

from __future__ import annotations

import os
import random
import socket

# Below Linux's default ephemeral range (32768-60999), above well-known services.
_LOW, _HIGH = 20_000, 32_767


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on now, this worker's own."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # "gw0", "gw1"...
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    mine = int(worker[2:]) % count if worker.startswith("gw") and worker[2:].isdigit() else 0
    for _ in range(1000):
        port = random.randrange(_LOW + mine, _HIGH, count)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    raise RuntimeError(f"no free port of residue {mine} modulo {count} in 1000 tries")

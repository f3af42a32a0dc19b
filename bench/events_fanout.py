"""events_p99_ms_50subs: event delivery lag to 50 websocket subscribers during a burst.

    .venv/bin/python -m bench.events_fanout [--quick]

A daemon runs a burst of no-op runs (one POST); 50 clients follow /events with
batched frames (`batch=1`, as the CLI and the TUI do). The lag of an event is its
arrival time at a client minus its `ts` (when the engine made the change, before the
commit). The clients live in their own processes (WORKERS of them) and read raw sockets,
stamping each frame's arrival and parsing it only after the burst, so what is
measured is what the daemon delivers, not how fast Python can decode 50 sockets. The baseline
is the same burst to one subscriber, so the ratio is the cost of fanning out. Each figure is
the median of REPEATS bursts, each on a new daemon: one burst's p99 varies by 2x on a shared
machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from apsis.lib.timefmt import parse_time
from tests.integration.conftest import Daemon

JOBS = {"burst": "program: {type: no-op}\n"}
WORKERS = 2
REPEATS = 3


def _follow(uri: str, sockets: int, runs: int) -> list[float]:
    """A worker: `sockets` subscribers until each has seen `runs` successes; the lags.

    Raw sockets and a selector, not a websocket library: a frame's arrival is stamped
    when its last byte is read, and only frame headers are looked at until the end."""
    import base64
    import os
    import selectors
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    target = f"{parts.path}?{parts.query}"
    selector = selectors.DefaultSelector()
    states = []
    for _ in range(sockets):
        sock = socket.create_connection((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"websocket refused: {head[:200]!r}")
        state = {"buf": bytearray(head.split(b"\r\n\r\n", 1)[1]), "frames": [], "done": 0}
        states.append(state)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, state)
    print("ready", flush=True)
    open_count = sockets
    deadline = time.monotonic() + 300
    while open_count:
        if time.monotonic() > deadline:
            raise TimeoutError("the burst did not reach every subscriber")
        for key, _ in selector.select(1.0):
            state = key.data
            data = key.fileobj.recv(1 << 20)
            arrived = time.time()
            if not data:
                raise RuntimeError("the daemon closed a subscriber")
            # Appended in place and cut from the front: a frame of ~650 KB comes in many
            # reads, and copying the whole buffer at each read made the reader's work grow
            # with the square of a frame's size.
            buf = state["buf"]
            buf += data
            while len(buf) >= 2:  # server frames are unmasked: header, length, payload
                length, at = buf[1] & 0x7F, 2
                if length == 126:
                    length, at = int.from_bytes(buf[2:4], "big"), 4
                elif length == 127:
                    length, at = int.from_bytes(buf[2:10], "big"), 10
                if len(buf) < at + length:
                    break
                with memoryview(buf) as view:
                    payload = bytes(view[at:at + length])
                del buf[:at + length]
                state["frames"].append((arrived, payload))
                state["done"] += payload.count(b'"to":"success"')
            if state["done"] >= runs:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_count -= 1
    return [(arrived - parse_time(event["ts"]).timestamp()) * 1000
            for state in states for arrived, payload in state["frames"]
            for event in json.loads(payload)]


def _burst_lags(daemon: Daemon, subscribers: int, runs: int) -> list[float]:
    """Lags in ms of every event at every subscriber, for one burst of `runs` runs."""
    import httpx

    with httpx.Client(base_url=daemon.api, timeout=60) as http:
        since = http.get("/alive").json()["seq"]
        uri = f"ws://127.0.0.1:{daemon.port}/api/v1/events?since={since}&batch=1"
        shares = [subscribers // WORKERS + (i < subscribers % WORKERS) for i in range(WORKERS)]
        workers = [subprocess.Popen([sys.executable, "-m", "bench.events_fanout", "--worker", uri,
                                     str(n), str(runs)], stdout=subprocess.PIPE, text=True,
                                    cwd=Path(__file__).resolve().parents[1])
                   for n in shares if n]
        try:
            for worker in workers:
                assert worker.stdout is not None
                if worker.stdout.readline().strip() != "ready":
                    raise RuntimeError("a subscriber process failed to start")
            time.sleep(0.2)
            http.post("/runs", json={"job_id": "burst", "count": runs}).raise_for_status()
            lags: list[float] = []
            for worker in workers:
                out, _ = worker.communicate(timeout=300)
                if worker.returncode:
                    raise RuntimeError(f"a subscriber process exited {worker.returncode}")
                lags.extend(json.loads(out))
        finally:
            for worker in workers:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
    return lags


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure(runs: int, subscribers: int = 50) -> tuple[float, float, int]:
    """(p99 ms with `subscribers`, p99 ms with one, events per subscriber) of one burst each."""
    with tempfile.TemporaryDirectory(prefix="apsis-bench-") as tmp:
        root = Path(tmp)
        results = []
        for n in (1, subscribers):
            daemon = Daemon(root / f"d{n}", JOBS)
            try:
                daemon.start()
                lags = _burst_lags(daemon, n, runs)
            finally:
                daemon.cleanup()
            results.append((_p99(lags), len(lags) // n))
    (one, _), (many, per_sub) = results
    return many, one, per_sub


def run(quick: bool) -> dict:
    bursts = [measure(200 if quick else 1000) for _ in range(REPEATS)]
    many = statistics.median(burst[0] for burst in bursts)
    one = statistics.median(burst[1] for burst in bursts)
    return {"events_p99_ms_50subs": {"value": round(many, 2), "unit": "ms",
                                     "baseline": round(one, 2)}}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--worker", nargs=3, metavar=("URI", "SOCKETS", "RUNS"),
                        help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.worker:
        uri, sockets, runs = opts.worker
        print(json.dumps(_follow(uri, int(sockets), int(runs))))
    else:
        print(json.dumps(run(opts.quick), indent=2))

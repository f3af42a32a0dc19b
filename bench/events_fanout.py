"""events_p99_ms_50subs: event delivery lag to 50 websocket subscribers during a burst.

    .venv/bin/python -m bench.events_fanout [--quick]

A daemon runs a burst of no-op runs (one POST); 50 clients follow /events with
batched frames (`batch=1`, as the CLI and the TUI do). The lag of an event is its
arrival time at a client minus its `ts` (when the engine made the change, before the
commit). The clients live in their own processes (WORKERS of them) and read raw sockets;
a frame's arrival is when the kernel received its last byte at the client's socket
(`_Reader`), and frames are parsed only after the burst, so what is measured is what the
daemon delivers, not how soon 50 Python readers on a shared machine get to read it. The baseline
is the same burst to one subscriber, so the ratio is the cost of fanning out. Each figure is
the median of REPEATS bursts, each on a new daemon: one burst's p99 varies by 2x on a shared
machine.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import struct
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
REPEATS = 8


# The kernel's time of arrival of what a read returns (Linux; elsewhere the time of the read).
SO_TIMESTAMPNS = 35 if sys.platform.startswith("linux") else None
RECEIVE_BUFFER = 4 << 20  # a burst's frames arrive whole, however slowly they are read


class _Reader:
    """One subscriber's socket, read into one growing buffer: a frame is found by its
    header as its last byte comes, and nothing is copied or parsed until the end.

    A frame's arrival is when the kernel received its last byte (`SO_TIMESTAMPNS`), not
    when this process got to read it: the readers share the machine's cores with the
    daemon, and the last of 50 read a frame ~70 ms after the daemon had written it to
    every socket, in ~6 ms. The receive buffer is large enough for the frames of a burst,
    so a reader's pace does not hold back what the daemon sends either."""

    SUCCESS = b'"to":"success"'

    def __init__(self, sock: socket.socket, first: bytes) -> None:
        self.sock = sock
        self.buf = bytearray(max(1 << 21, 2 * len(first)))
        self.buf[:len(first)] = first
        self.size = len(first)  # bytes read
        self.next_frame = 0  # where the header of the next frame starts
        self.frames: list[tuple[float, int, int]] = []  # arrival, payload start and end
        self.successes = 0

    def read(self) -> None:
        """What the socket has now; each frame it completes, stamped with when the kernel
        received the last of it."""
        if len(self.buf) - self.size < 1 << 20:
            self.buf.extend(bytes(len(self.buf)))
        with memoryview(self.buf) as view:
            count, ancillary, _, _ = self.sock.recvmsg_into([view[self.size:]],
                                                            socket.CMSG_SPACE(16))
        arrived = time.time()
        for level, kind, data in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", data[:16])
                arrived = seconds + nanoseconds / 1e9
        if not count:
            raise RuntimeError("the daemon closed a subscriber")
        self.size += count
        buf, at = self.buf, self.next_frame
        while self.size - at >= 10 or (self.size - at >= 2 and buf[at + 1] & 0x7F < 126):
            length, start = buf[at + 1] & 0x7F, at + 2  # server frames are unmasked
            if length == 126:
                length, start = int.from_bytes(buf[at + 2:at + 4], "big"), at + 4
            elif length == 127:
                length, start = int.from_bytes(buf[at + 2:at + 10], "big"), at + 10
            if self.size < start + length:
                break
            at = start + length
            self.frames.append((arrived, start, at))
            self.successes += buf.count(self.SUCCESS, start, at)
        self.next_frame = at

    def lags(self) -> list[float]:
        """Arrival minus `ts` of each event read, in ms."""
        return [(arrived - parse_time(event["ts"]).timestamp()) * 1000
                for arrived, start, end in self.frames
                for event in json.loads(self.buf[start:end])]


def _follow(uri: str, sockets: int, runs: int) -> list[float]:
    """A worker: `sockets` subscribers until each has seen `runs` successes; the lags.

    Raw sockets and a selector, not a websocket library: see `_Reader`."""
    import base64
    import os
    import selectors
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    target = f"{parts.path}?{parts.query}"
    selector = selectors.DefaultSelector()
    readers = []
    for _ in range(sockets):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)  # before connecting
        if SO_TIMESTAMPNS is not None:
            sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
                     f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        if not head.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"websocket refused: {head[:200]!r}")
        reader = _Reader(sock, head.split(b"\r\n\r\n", 1)[1])
        readers.append(reader)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, reader)
    print("ready", flush=True)
    open_count = sockets
    deadline = time.monotonic() + 300
    while open_count:
        if time.monotonic() > deadline:
            raise TimeoutError("the burst did not reach every subscriber")
        for key, _ in selector.select(1.0):
            reader = key.data
            reader.read()
            if reader.successes >= runs:
                selector.unregister(key.fileobj)
                key.fileobj.close()
                open_count -= 1
    return [lag for reader in readers for lag in reader.lags()]


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

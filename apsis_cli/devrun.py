"""`make run`: the daemon on jobs/ with the embedded SQLite database, and the TUI on it.

Quitting the TUI stops the daemon this started (the agent and any program still
running carry on, as they would after any daemon restart).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port(preferred: int = 5000) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            # As the daemon binds: connections of the last session in TIME_WAIT must not
            # push it to another port (the TUI remembers its filter per URL).
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def wait_alive(url: str, daemon: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            sys.exit(f"the daemon exited with status {daemon.returncode}; see the log above")
        try:
            with urllib.request.urlopen(f"{url}/api/v1/alive", timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the daemon did not answer at {url} within {timeout:g}s")


def main() -> int:
    root = Path.cwd()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = open(root / "apsis-dev.log", "ab")
    bin_dir = Path(sys.executable).parent
    daemon = subprocess.Popen(
        [str(bin_dir / "apsisctl"), "serve", "--jobs", str(root / "jobs"), "--db", str(root / "apsis.db"),
         "--bind", f"127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        wait_alive(url, daemon)
        print(f"daemon at {url} (log: apsis-dev.log)", file=sys.stderr)
        env = {**os.environ, "APSIS_URL": url}
        return subprocess.call([str(bin_dir / "apsis"), "tui"], env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()


if __name__ == "__main__":
    sys.exit(main())

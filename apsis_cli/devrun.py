"""`make run`: the daemon on jobs/ with the embedded SQLite database, and the TUI on it.

Quitting the TUI stops the daemon this started (the agent and any program still
running carry on, as they would after any daemon restart). On a fresh database it
creates a few demo runs, so the first screen shows runs that happen within seconds
(successes, successors, a flaky job's retries), not only future schedules.
If port 5000 is taken the daemon gets a free port: the URL is printed before the TUI
opens and again when it quits, and written where `apsis` looks when neither --url nor
APSIS_URL is set (`apsis.client.url_file()`), so that a CLI in another terminal finds
it; the file goes when the daemon does.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import datetime as dt
import json
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


def demo_runs(today: dt.date) -> list[tuple[str, dict[str, str]]]:
    """The runs created on a fresh database, (job id, args): each finishes within seconds."""
    return [("market/load-prices", {"date": today.isoformat(), "country": "US"}),
            ("market/load-prices", {"date": today.isoformat(), "country": "GB"}),
            ("ops/flaky", {}),
            ("ops/heartbeat", {})]


def create_demo_runs(url: str) -> None:
    """Something to look at on a fresh database: runs that start now."""
    for job_id, args in demo_runs(dt.date.today()):
        body = json.dumps({"job_id": job_id, "args": args}).encode()
        request = urllib.request.Request(f"{url}/api/v1/runs", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10):
                pass
        except OSError as exc:  # a demo job renamed or removed: the daemon runs all the same
            print(f"demo run of {job_id} not created: {exc}", file=sys.stderr)


def where(url: str, preferred: int) -> str:
    """Where the daemon is, and how a CLI in another terminal reaches it."""
    if url == f"http://127.0.0.1:{preferred}":
        return f"daemon at {url} (log: apsis-dev.log)"
    return (f"port {preferred} is taken: daemon at {url} (log: apsis-dev.log); `apsis` in "
            f"another terminal finds it, or: export APSIS_URL={url}")


def publish_url(url: str) -> Path:
    """Writes `url` where `apsis` looks when no URL is given, atomically (a CLI never
    reads half of it); returns the file."""
    from apsis.client import url_file

    path = Path(url_file())
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.{os.getpid()}")
    temp.write_text(url + "\n")
    os.replace(temp, path)
    return path


def unpublish_url(path: Path, url: str) -> None:
    """Removes the file, unless another `make run` has written its own URL there since."""
    try:
        if path.read_text().strip() == url:
            path.unlink()
    except OSError:
        pass


def main() -> int:
    root = Path.cwd()
    preferred = 5000
    port = free_port(preferred)
    url = f"http://127.0.0.1:{port}"
    fresh = not (root / "apsis.db").exists()
    log = open(root / "apsis-dev.log", "ab")
    bin_dir = Path(sys.executable).parent
    published: Path | None = None
    daemon = subprocess.Popen(
        [str(bin_dir / "apsisctl"), "serve", "--jobs", str(root / "jobs"), "--db", str(root / "apsis.db"),
         "--bind", f"127.0.0.1:{port}"], stdout=log, stderr=log)
    try:
        wait_alive(url, daemon)
        if fresh:
            create_demo_runs(url)
        published = publish_url(url)
        print(where(url, preferred), file=sys.stderr)
        env = {**os.environ, "APSIS_URL": url}
        return subprocess.call([str(bin_dir / "apsis"), "tui"], env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        if published is not None:
            unpublish_url(published, url)
        print(f"stopping the daemon at {url}; `make run` starts it again", file=sys.stderr)
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            try:
                daemon.wait(10)
            except subprocess.TimeoutExpired:
                daemon.kill()


if __name__ == "__main__":
    sys.exit(main())

"""Running the real `apsis` executable against a daemon, as a script would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
APSIS = str(BIN / "apsis")
APSISCTL = str(BIN / "apsisctl")


def env_for(url: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("APSIS_") and k != "NO_COLOR"}
    if url:
        env["APSIS_URL"] = url
    env.update(extra)
    return env


def apsis(url: str | None, *args: str, timeout: float = 30, env: dict[str, str] | None = None,
          exe: str = APSIS, **kw: Any) -> subprocess.CompletedProcess:
    """`apsis ARGS` with APSIS_URL set; bytes or text as asked (text by default)."""
    kw.setdefault("text", True)
    return subprocess.run([exe, *args], env=env or env_for(url), capture_output=True, check=False,
                          timeout=timeout, **kw)


def apsisctl(url: str | None, *args: str, **kw: Any) -> subprocess.CompletedProcess:
    return apsis(url, *args, exe=APSISCTL, **kw)


def popen(url: str | None, *args: str, env: dict[str, str] | None = None,
          **kw: Any) -> subprocess.Popen:
    return subprocess.Popen([APSIS, *args], env=env or env_for(url), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, **kw)


def one_run(result: subprocess.CompletedProcess) -> str:
    """The id a `run` printed (the only line on stdout)."""
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert len(lines) == 1 and lines[0].startswith("r"), result.stdout
    return lines[0]


def on_terminal(args: list[str], env: dict[str, str], *, stdout: bool = True,
                rows: int | None = None, timeout: float = 20) -> tuple[int, bytes]:
    """`apsis ARGS` with a pseudo-terminal as stderr (and stdout, unless `stdout` is
    False: then it is thrown away), `rows` lines tall if given: its exit code and what
    it wrote on the terminal."""
    import fcntl
    import pty
    import select
    import struct
    import termios
    import time

    master, slave = pty.openpty()
    if rows is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 100, 0, 0))
    proc = subprocess.Popen([APSIS, *args], env=env, stderr=slave, stdin=subprocess.DEVNULL,
                            stdout=slave if stdout else subprocess.DEVNULL)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 1)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the other side closed: all of it was read
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(master)
        code = proc.wait(20)
    return code, out


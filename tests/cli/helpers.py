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

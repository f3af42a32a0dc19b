"""The README's first example, run as written against a real daemon on the demo jobs.

It once hung for ever on a fresh database: `market/load-prices` waited for the
previous trading day's run, which did not exist.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .helpers import BIN, env_for

ROOT = Path(__file__).resolve().parents[2]
# Lines the test cannot run as written: the fixture is the daemon, and the TUI needs a terminal.
NOT_RUN = ("apsisctl serve", "apsis tui")


def readme_commands() -> list[str]:
    """The command lines of the README's first shell block, comments dropped."""
    block = re.search(r"```sh\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert block, "README.md has no ```sh block"
    lines = [re.sub(r"\s+#\s.*$", "", line).strip() for line in block.group(1).splitlines()]
    return [line for line in lines if line]


def demo_jobs() -> dict[str, str]:
    jobs_dir = ROOT / "jobs"
    return {str(p.relative_to(jobs_dir).with_suffix("")): p.read_text()
            for p in sorted(jobs_dir.rglob("*.yaml")) if not p.name.startswith(".")}


def demo_daemon(apsis_daemon: Any) -> Any:
    """A real daemon on a copy of the demo jobs/ (with its .apsis-jobs.yaml), a fresh database."""
    daemon = apsis_daemon(demo_jobs(), start=False)
    shutil.copy(ROOT / "jobs" / ".apsis-jobs.yaml", daemon.jobs_dir / ".apsis-jobs.yaml")
    return daemon.start()


def test_readme_example_runs_as_written(apsis_daemon):
    daemon = demo_daemon(apsis_daemon)
    env = env_for(daemon.url, PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    commands = readme_commands()
    assert any("market/load-prices" in c for c in commands), commands
    outputs = {}
    for command in commands:
        if command.startswith(NOT_RUN):
            continue
        result = subprocess.run(["bash", "-c", command], cwd=daemon.root, env=env, text=True,
                                capture_output=True, timeout=60)
        assert result.returncode == 0, (command, result.stdout, result.stderr)
        outputs[command] = result
    [load] = [r for c, r in outputs.items() if c.startswith("apsis run market/load-prices")]
    assert "loading US prices for 2026-12-01" in load.stdout
    assert "success" in load.stderr

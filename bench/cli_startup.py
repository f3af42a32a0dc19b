"""cli_help_ms, cli_runs_ms: wall time of `apsis --help` and `apsis runs` (empty daemon);
cli_runs_500_ms: `apsis runs --limit 500` once the daemon has 600 finished runs.

The baseline is `python -c pass` with the same interpreter, measured interleaved in the
same run, so the ratio (goal: --help within 4x of a bare interpreter) survives a noisy
machine.  Medians over N runs, after one warm-up each (the page cache, .pyc files).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.daemon_runs import wait_finished
from tests.integration.conftest import Daemon

APSIS = str(Path(sys.executable).parent / "apsis")


def _wall_ms(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False)
    elapsed = (time.perf_counter() - start) * 1000
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {result.returncode}: {result.stderr[-2000:]!r}")
    return elapsed


def measure(cmds: dict[str, list[str]], env: dict[str, str], repeat: int) -> dict[str, float]:
    """Median wall ms of each command, interleaved so drift hits them all alike."""
    samples: dict[str, list[float]] = {name: [] for name in cmds}
    for cmd in cmds.values():
        _wall_ms(cmd, env)  # warm-up
    for _ in range(repeat):
        for name, cmd in cmds.items():
            samples[name].append(_wall_ms(cmd, env))
    return {name: statistics.median(values) for name, values in samples.items()}


def run(quick: bool) -> dict:
    repeat = 10 if quick else 30
    # As installed: bytecode cached (the warm-up writes it), whatever this shell says.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("APSIS_") and k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.TemporaryDirectory() as tmp:
        daemon = Daemon(Path(tmp), {"noop": "program: {type: no-op}\n"})
        daemon.start()
        try:
            env["APSIS_URL"] = daemon.url
            medians = measure({
                "bare": [sys.executable, "-c", "pass"],
                "help": [APSIS, "--help"],
                "runs": [APSIS, "runs"],
            }, env, repeat)
            with httpx.Client(base_url=daemon.api, timeout=120) as api:
                api.post("/runs", json={"job_id": "noop", "count": 600}).raise_for_status()
                wait_finished(api, "noop", 600)
            medians.update(measure({"runs_500": [APSIS, "runs", "--limit", "500"]}, env, repeat))
        finally:
            daemon.cleanup()
    baseline = round(medians["bare"], 1)
    return {
        "cli_help_ms": {"value": round(medians["help"], 1), "unit": "ms", "baseline": baseline},
        "cli_runs_ms": {"value": round(medians["runs"], 1), "unit": "ms", "baseline": baseline},
        "cli_runs_500_ms": {"value": round(medians["runs_500"], 1), "unit": "ms",
                            "baseline": baseline},
    }


if __name__ == "__main__":
    print(run("--quick" in sys.argv))

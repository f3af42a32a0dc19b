"""`make bench`: runs every benchmark and writes bench/results.json (SPEC §1.13).

Each benchmark module has `run(quick: bool) -> {name: {value, unit, baseline}}`;
a baseline is measured in the same run, so ratios survive a noisy machine.
A benchmark that fails is reported and the others still run. `--soak` runs the
ten-minute soak instead (`make soak`); its figures stay in the results file until
the next soak, and a partial run (`--soak`, `--only`) keeps every other figure there.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from pathlib import Path

MODULES = [
    "bench.check_job",
    "bench.reload_one",
    "bench.jobs_10k",
    "bench.archive_lag",
    "bench.daemon_runs",
    "bench.concurrent_runs",
    "bench.startup_1m",
    "bench.startup_interval",
    "bench.big_output",
    "bench.events_fanout",
    "bench.get_runs_1m",
    "bench.cli_startup",
    "bench.tui_table",
    "bench.postgres",
    "bench.failover",
]
SOAK = ["bench.soak"]  # ten minutes: only on request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a run of a few minutes")
    parser.add_argument("--only", action="append", help="run only these modules (e.g. check_job)")
    parser.add_argument("--soak", action="store_true",
                        help="only the soak benchmark: 10 minutes under load (1 with --quick)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results.json")))
    opts = parser.parse_args()
    out = Path(opts.out)
    metrics: dict[str, dict] = {}
    if out.exists():  # a partial run keeps every other figure; a full one, the soak's
        kept = json.loads(out.read_text()).get("metrics", {})
        metrics = {k: v for k, v in kept.items() if opts.soak or opts.only or k.startswith("soak_")}
    failed = []
    for name in SOAK if opts.soak else MODULES:
        if opts.only and name.split(".")[-1] not in opts.only:
            continue
        start = time.monotonic()
        try:
            module = importlib.import_module(name)
            found = module.run(opts.quick)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            failed.append(name)
            traceback.print_exc()
            continue
        except Exception:
            failed.append(name)
            traceback.print_exc()
            continue
        metrics.update(found)
        print(f"{name}: {json.dumps(found)} ({time.monotonic() - start:.0f}s)", file=sys.stderr)
    out.write_text(json.dumps({"metrics": metrics}, indent=2) + "\n")
    print(f"wrote {out}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

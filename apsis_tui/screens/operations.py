"""Which run operations a state allows, and how the confirmation dialog words them.

Checked before asking, so a user is told at once that a finished run cannot be
skipped; the daemon still decides (a 409 becomes an error notification).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from apsis.model.states import FINISHED, State
from apsis.present import FINISHED_STATES, PENDING_STATES

MARK_STATES = tuple(state.value for state in State if state in FINISHED)
SIGNALS = ("SIGTERM", "SIGINT", "SIGHUP", "SIGUSR1", "SIGUSR2", "SIGKILL")

ALLOWED: dict[str, frozenset[str]] = {
    "skip": PENDING_STATES,
    "start": frozenset({"scheduled", "waiting"}),
    "stop": frozenset({"running"}),
    "signal": frozenset({"running", "stopping"}),
    "rerun": FINISHED_STATES,
    "mark": FINISHED_STATES,
}

WHAT = {
    "skip": "Skip {run}: it will not run.",
    "start": "Start {run} now, ignoring its schedule time and conditions.",
    "stop": "Stop {run}: send its stop signal, then SIGKILL after the grace period.",
    "rerun": "Rerun {run}: create a new run of the same instance, now.",
    "mark": "Mark {run} as {value} (it is {state}).",
    "signal": "Send {value} to {run}.",
}


def refusal(run: Mapping[str, Any], operation: str) -> str | None:
    """Why ``operation`` cannot apply to the run in its current state, or None."""
    state = run.get("state")
    allowed = ALLOWED.get(operation)
    if allowed is None:
        return f"unknown operation {operation!r}"
    if state is not None and state not in allowed:
        states = ", ".join(sorted(allowed))
        return f"cannot {operation} {run.get('run_id')}: it is {state} (only {states})"
    return None


def describe(run: Mapping[str, Any], operation: str, value: str | None = None) -> str:
    """The question the confirmation dialog asks."""
    label = f"{run.get('run_id')} ({run.get('job_id', '?')}"
    args = run.get("args") or {}
    if args:
        label += " " + " ".join(f"{k}={v}" for k, v in args.items())
    label += ")"
    return WHAT[operation].format(run=label, value=value, state=run.get("state", "?"))

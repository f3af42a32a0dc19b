"""A transition's recorded row and event summary are the run as it is once the change
is applied (`_Change.record` builds them from the run's own values, without copies)."""

from __future__ import annotations

import copy

import pytest

from apsis.engine.core import _Change
from apsis.model.run import ProcInfo, Run, RunMeta
from apsis.model.states import State


def _run() -> Run:
    return Run(run_id="r7", job_id="data/load", args={"date": "2026-01-02"}, state=State.RUNNING,
               times={"schedule": "2026-01-02T09:00:00Z", "running": "2026-01-02T09:00:01Z"},
               labels=["prices"], program={"type": "no-op", "duration": 0.0},
               conditions=[{"type": "const", "value": True}], outputs=[{"output_id": "output",
                                                                        "length": 3}],
               meta=RunMeta(schedule="data/load#0", proc=ProcInfo(pid=12, outputs={})))


@pytest.mark.timeout(10)
@pytest.mark.parametrize("updates", [{}, {"exit_code": 2, "signal": "SIGTERM",
                                          "meta": RunMeta(stop_reason="asked"),
                                          "outputs": [{"output_id": "output", "length": 9}]}])
def test_recorded_row_and_summary_are_the_applied_run(updates: dict) -> None:
    run = _run()
    before = copy.deepcopy(run.to_jso())
    change = _Change(State.RUNNING, State.FAILURE, "2026-01-02T09:00:05Z", "exit 2", "exit 2",
                     dict(updates))
    row, entry, events = change.record(run)
    assert run.to_jso() == before  # recording leaves the run as it is
    applied = copy.deepcopy(run)
    change.apply(applied)
    assert row == applied.to_jso()
    assert list(row) == list(applied.to_jso())  # the stored text's key order too
    transition = events[0]
    assert transition["run"] == applied.summary()
    assert list(transition["run"]) == list(applied.summary())
    assert (transition["from"], transition["to"]) == ("running", "failure")
    assert entry == {"run_id": "r7", "ts": "2026-01-02T09:00:05Z", "state": "failure",
                     "message": "exit 2"}

"""TuiModel without a screen: pages against events, counts, the indicator, observers."""

from __future__ import annotations

from typing import Any

from apsis_tui.messages import ConnectionChanged
from apsis_tui.model import Topic, TuiModel
from tests.tui.factory import BASE, iso, make_run


class Clock:
    def __init__(self, now: float = BASE) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_a_page_read_before_an_event_does_not_undo_it() -> None:
    model = TuiModel(Clock())
    seen: list[list[str]] = []
    model.runs_changed.subscribe(lambda runs: seen.append([r["state"] for r in runs]))
    model.apply_run(make_run(1, BASE, state="failure"), seq=120)
    model.apply_page([make_run(1, BASE, state="running"), make_run(2, BASE)], seq=110)
    assert model.runs["r1"]["state"] == "failure"
    assert model.runs["r2"]["state"] == "success"
    assert seen == [["failure"], ["success"]]
    assert model.loaded


def test_runs_keep_only_their_summary() -> None:
    model = TuiModel(Clock())
    run = {**make_run(1, BASE), "program": {"type": "shell", "command": "x" * 10_000}}
    model.apply_page([run], seq=1)
    assert "program" not in model.runs["r1"]


def test_counts_running_and_failures_of_the_last_hour() -> None:
    clock = Clock()
    model = TuiModel(clock)
    model.apply_page([
        make_run(1, BASE - 60, state="running"),
        make_run(2, BASE - 120, state="failure", running=BASE - 120, end=BASE - 60),
        make_run(3, BASE - 7200, state="error", running=BASE - 7200, end=BASE - 7100),
    ], seq=1)
    assert model.counts() == (1, 1)
    model.apply_event({"type": "run_transition", "seq": 2,
                       "run": {**make_run(1, BASE - 60, state="success"),
                               "times": {"success": iso(BASE)}}})
    assert model.counts() == (0, 1)
    clock.now += 3600
    assert model.counts() == (0, 0)


def test_a_reset_empties_the_runs_and_says_so() -> None:
    model = TuiModel(Clock())
    resets: list[None] = []
    model.runs_reset.subscribe(resets.append)
    model.apply_page([make_run(1, BASE, state="running")], seq=5)
    model.apply_event({"type": "reset", "seq": 50})
    assert model.runs == {} and model.counts() == (0, 0)
    assert resets == [None] and model.last_seq == 50


def test_job_events_keep_the_job_list() -> None:
    model = TuiModel(Clock())
    changed: list[str | None] = []
    model.jobs_changed.subscribe(lambda c: changed.append(c.job_id))
    model.set_jobs([{"job_id": "a"}, {"job_id": "b"}])
    model.apply_event({"type": "job_removed", "seq": 1, "job": {"job_id": "a"}})
    model.apply_event({"type": "job_added", "seq": 2, "job": {"job_id": "c"}})
    model.remember_job({"job_id": "b", "source": "# edited\n"})  # the list's copy wins
    model.remember_job({"job_id": "adhoc", "source": "program: x\n"})
    assert sorted(model.jobs) == ["adhoc", "b", "c"]
    assert "source" not in model.jobs["adhoc"]
    assert changed == [None, "a", "c"]


def test_live_only_when_the_socket_and_the_probe_agree() -> None:
    clock = Clock()
    model = TuiModel(clock)
    changes: list[ConnectionChanged] = []
    model.connection_changed.subscribe(changes.append)
    model.probe_answered("1.2.3")
    assert model.connection == "connecting"  # the socket is not open yet
    model.stream_changed("live")
    assert model.connection == "live" and model.down_since is None
    clock.now += 10
    model.probe_failed("cannot reach Apsis")
    assert (model.connection, model.connection_detail) == ("down", "cannot reach Apsis")
    assert model.down_since == BASE + 10
    model.probe_answered(None)
    assert model.connection == "live" and model.version == "1.2.3"
    model.stream_changed("disconnected", "refused: 401")
    assert model.connection_detail == "refused: 401"
    assert [c.state for c in changes] == ["live", "down", "live", "down"]


def test_topic_drops_subscribers_that_left() -> None:
    topic: Topic[int] = Topic()
    got: dict[str, list[Any]] = {"a": [], "b": [], "c": []}
    present = {"b": True}
    unsubscribe = topic.subscribe(got["a"].append)
    topic.subscribe(got["b"].append, alive=lambda: present["b"])
    topic.subscribe(got["c"].append)
    topic.publish(1)
    unsubscribe()
    present["b"] = False
    topic.publish(2)
    present["b"] = True  # gone for good: not called again
    topic.publish(3)
    assert got == {"a": [1], "b": [1], "c": [1, 2, 3]}

"""The TUI's live data: runs, jobs, the last event, counts and the connection.

The App feeds it (pages of runs, events, probe results) and the screens observe it:
each kind of change is a `Topic` they subscribe to. Keeping it out of the App keeps
it plain Python: no Textual here (an import-linter contract holds it so), and the
rules (a page never undoes a later event, a reset empties everything, the indicator
is live only when the socket and the probe agree) are tested without a screen.

    model = TuiModel()
    model.runs_changed.subscribe(lambda runs: print(len(runs), "runs changed"))
    model.apply_page(page["runs"], page["seq"])
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from apsis.present import ACTIVE_STATES, FAILED_STATES, parse_time
from apsis_tui.messages import ConnectionChanged, ConnectionState, JobsChanged, RunLogged

T = TypeVar("T")

FAILED_WINDOW = 3600.0  # the counts name failures of the last hour
REFREEZE_AFTER = 20_000  # runs changed by events before they are frozen out of the GC too

# What a run keeps in memory for the tables; the Run screen fetches the full run.
# 100 000 full runs (programs, conditions, actions) would cost hundreds of MB.
SUMMARY_KEYS = (
    "run_id", "job_id", "args", "state", "labels", "times", "message", "rerun_of",
    "attempt", "exit_code", "signal", "ad_hoc", "expected",
)


_SUMMARY_KEY_SET = frozenset(SUMMARY_KEYS)


def summarize(run: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a run the tables and the title need."""
    if isinstance(run, dict) and run.keys() <= _SUMMARY_KEY_SET:
        return run  # a summary already (a page of summaries): kept as it is, never changed
    return {key: run[key] for key in SUMMARY_KEYS if key in run}


@dataclass(slots=True)
class _Subscriber(Generic[T]):
    callback: Callable[[T], object]
    alive: Callable[[], bool] | None


class Topic(Generic[T]):
    """One kind of change: subscribers are called with each value published, in order."""

    def __init__(self) -> None:
        self._subscribers: list[_Subscriber[T]] = []

    def subscribe(self, callback: Callable[[T], object], *,
                  alive: Callable[[], bool] | None = None) -> Callable[[], None]:
        """Call ``callback`` on each publish until the returned function is called, or
        until ``alive`` says the subscriber has gone (checked at each publish)."""
        subscriber = _Subscriber(callback, alive)
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, value: T) -> None:
        gone = []
        for subscriber in list(self._subscribers):
            if subscriber.alive is not None and not subscriber.alive():
                gone.append(subscriber)
            else:
                subscriber.callback(value)
        for subscriber in gone:
            self._subscribers.remove(subscriber)


class TuiModel:
    """Everything loaded from one daemon, unfiltered; what the screens draw from."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        # run id -> summary: everything loaded, unfiltered (the Runs table filters).
        self.runs: dict[str, dict[str, Any]] = {}
        self._run_seq: dict[str, int] = {}  # the seq of the event that last set a run
        self.jobs: dict[str, dict[str, Any]] = {}
        self.last_seq: int | None = None
        self.loaded = False  # a first page of runs is in
        self.version: str | None = None
        self.connection: ConnectionState = "connecting"
        self.connection_detail = ""
        self._down_since: float | None = None
        # The indicator is live only when both agree: the event socket is open (as the
        # client reports it) and /alive answers. Either one alone can be wrong: the
        # probe answers while the socket is still reconnecting, and a half-open socket
        # looks open until its ping times out.
        self._stream_state = "connecting"
        self._stream_error = ""
        self._probe_error: str | None = None
        self._active: set[str] = set()
        self._failed: dict[str, float] = {}  # run id -> when it failed
        self._unfrozen = 0  # runs stored since the GC last froze them

        self.runs_changed: Topic[list[dict[str, Any]]] = Topic()
        self.run_logged: Topic[RunLogged] = Topic()
        self.jobs_changed: Topic[JobsChanged] = Topic()
        self.connection_changed: Topic[ConnectionChanged] = Topic()
        self.runs_reset: Topic[None] = Topic()

    # -- runs ------------------------------------------------------------------------

    def apply_page(self, runs: Iterable[Mapping[str, Any]], seq: int) -> None:
        """Runs as of event ``seq``; a run an event changed later keeps that change."""
        if self._run_seq:  # events arrived meanwhile: a run one set later keeps its change
            run_seq = self._run_seq
            runs = [run for run in runs if run_seq.get(run["run_id"], -1) <= seq]
        if isinstance(runs, list) and all(map(_SUMMARY_KEY_SET.issuperset, runs)):
            batch = runs  # a page of summaries (decoded JSON), kept as it is: one check
        else:
            batch = list(map(summarize, runs))
        self.loaded = True
        if batch:
            self._store_runs(batch)
            self.runs_changed.publish(batch)

    def apply_run(self, run: Mapping[str, Any], seq: int | None = None) -> dict[str, Any]:
        """One run's new summary (from an event, or an operation's answer)."""
        run_id = run["run_id"]
        if seq is not None:
            self._run_seq[run_id] = seq
        merged = self._store_run({**self.runs.get(run_id, {}), **summarize(run)})
        self.runs_changed.publish([merged])
        self._unfrozen += 1
        if self._unfrozen >= REFREEZE_AFTER:  # a dashboard left open for days
            self.freeze()
        return merged

    def freeze(self) -> None:
        """Moves what exists now (the runs loaded or changed) out of the cyclic GC's reach.

        They live as long as the app, yet every full collection walked them all: a pause
        of ~90 ms per 20 000 runs, felt as a stuck cursor. Refcounting still frees them.
        """
        gc.collect(1)  # young garbage first, so little is frozen that a collection would free
        gc.freeze()
        self._unfrozen = 0

    @contextlib.contextmanager
    def loading(self) -> Iterator[None]:
        """The initial load, with the cyclic GC paused: each page decoded makes thousands
        of dicts, and the collections they set off (a full one walks every run loaded
        so far) took ~15 % of the load's CPU. Whoever loads calls `freeze` after each
        page, which collects what was made since (a short pause, each object looked at
        once); the runs end frozen."""
        paused = gc.isenabled()
        gc.disable()
        try:
            yield
        finally:
            if paused:
                gc.enable()
        self.freeze()

    def _store_runs(self, batch: list[dict[str, Any]]) -> None:
        """`_store_run` for a page's worth of runs, with no call per run."""
        latest = {run["run_id"]: run for run in batch}  # a run given twice: its last
        self.runs.update(latest)
        active, failed = self._active, self._failed
        active.difference_update(latest)
        for run_id in failed.keys() & latest.keys():
            del failed[run_id]
        for run_id, run in latest.items():
            state = run.get("state")
            if state in ACTIVE_STATES:
                active.add(run_id)
            elif state in FAILED_STATES:
                when = parse_time((run.get("times") or {}).get(state))
                failed[run_id] = when if when is not None else self.clock()

    def _store_run(self, run: dict[str, Any]) -> dict[str, Any]:
        run_id = run["run_id"]
        self.runs[run_id] = run
        state = run.get("state")
        if state in ACTIVE_STATES:
            self._active.add(run_id)
        else:
            self._active.discard(run_id)
        if state in FAILED_STATES:
            when = parse_time((run.get("times") or {}).get(state))
            self._failed[run_id] = when if when is not None else self.clock()
        else:
            self._failed.pop(run_id, None)
        return run

    def counts(self) -> tuple[int, int]:
        """(runs running now, runs that failed in the last hour)."""
        horizon = self.clock() - FAILED_WINDOW
        for run_id in [r for r, when in self._failed.items() if when < horizon]:
            del self._failed[run_id]
        return len(self._active), len(self._failed)

    # -- jobs ------------------------------------------------------------------------

    def set_jobs(self, jobs: Iterable[Mapping[str, Any]]) -> None:
        """The daemon's whole job list."""
        self.jobs = {job["job_id"]: dict(job) for job in jobs}
        self.jobs_changed.publish(JobsChanged(None))

    def remember_job(self, job: Mapping[str, Any]) -> None:
        """A job fetched on its own (an ad hoc run's): kept unless the list has it."""
        self.jobs.setdefault(job["job_id"], {k: v for k, v in job.items() if k != "source"})

    # -- events ----------------------------------------------------------------------

    def apply_event(self, event: Mapping[str, Any]) -> None:
        """One event of the stream; a ``reset`` empties the runs (to be loaded again)."""
        kind = event.get("type")
        seq = event.get("seq")
        if isinstance(seq, int):
            self.last_seq = seq
        if kind == "run_transition":
            self.apply_run(event["run"], seq if isinstance(seq, int) else None)
        elif kind == "run_log":
            entry = event.get("entry") or {}
            known = self.runs.get(event["run_id"])
            # An entry of the state the run is in is its message now (why a run still waits).
            # (A transition without a message logs its state's name: not one.)
            if (known is not None and entry.get("state") == known.get("state")
                    and entry.get("message") not in (known.get("message"), entry.get("state"))):
                self.apply_run({**known, "message": entry.get("message")},
                               seq if isinstance(seq, int) else None)
            self.run_logged.publish(RunLogged(event["run_id"], entry))
        elif kind in ("job_added", "job_changed", "job_removed", "jobs_reloaded"):
            job = event.get("job") or {}
            job_id = job.get("job_id")
            if kind == "job_removed" and job_id:
                self.jobs.pop(job_id, None)
            elif job_id:
                self.jobs[job_id] = job
            self.jobs_changed.publish(JobsChanged(job_id))
        elif kind == "reset":
            self.runs.clear()
            self._run_seq.clear()
            self._active.clear()
            self._failed.clear()
            self.runs_reset.publish(None)

    # -- the connection ----------------------------------------------------------------

    def stream_started(self, since: int) -> None:
        """The event stream is (re)opened from ``since``."""
        self.last_seq = since
        self._stream_error = ""

    def stream_changed(self, state: str, error: str = "") -> None:
        """The client's report on the event socket: connecting, live or disconnected
        (``error``: refused for good, say why)."""
        self._stream_state = state
        if error:
            self._stream_error = error
        self._show_connection()

    def probe_answered(self, version: str | None) -> None:
        """``/alive`` answered, with the daemon's version."""
        self.version = version or self.version
        self._probe_error = None
        self._show_connection()

    def probe_failed(self, message: str) -> None:
        self._probe_error = message
        self._show_connection()

    def unreachable(self, detail: str) -> None:
        """A request failed for want of the daemon: down, until the next report."""
        self._set_connection("down", detail)

    def _show_connection(self) -> None:
        if self._probe_error is not None:
            self._set_connection("down", self._probe_error)
        elif self._stream_state == "disconnected":
            self._set_connection("down", self._stream_error or "the event stream is reconnecting")
        elif self._stream_state == "live":
            self._set_connection("live")
        else:
            self._set_connection("connecting")

    def _set_connection(self, state: ConnectionState, detail: str = "") -> None:
        changed = (state, detail) != (self.connection, self.connection_detail)
        if state == "down" and self.connection != "down":
            self._down_since = self.clock()
        self.connection = state
        self.connection_detail = detail
        if changed:
            self.connection_changed.publish(ConnectionChanged(state, self.version, detail))

    @property
    def down_since(self) -> float | None:
        """When the link went down, while it is down."""
        return self._down_since if self.connection == "down" else None

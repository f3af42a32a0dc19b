"""A run: one execution of an instance (job id + args)."""

from __future__ import annotations

import datetime as dt
import operator
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ..lib.timefmt import format_time, parse_time
from .states import State


def run_number(run_id: str) -> int:
    """`r123` → 123; ids sort by this number, never by their text."""
    return int(run_id[1:])


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """Where a run's process lives: enough to find it again after a restart."""

    pid: int
    outputs: dict[str, str]  # output id → spool path (on the host that runs it)
    host: str | None = None  # None: the local agent
    user: str | None = None
    host_group: str | None = None

    @property
    def remote(self) -> bool:
        return self.host is not None

    def to_jso(self) -> dict[str, Any]:
        jso: dict[str, Any] = {"host": self.host, "pid": self.pid, "outputs": dict(self.outputs)}
        if self.host:
            jso["user"] = self.user
            if self.host_group:
                jso["host_group"] = self.host_group
        return jso

    @classmethod
    def from_jso(cls, jso: dict[str, Any]) -> ProcInfo:
        return cls(pid=int(jso.get("pid") or 0), outputs=dict(jso.get("outputs") or {}),
                   host=jso.get("host") or None, user=jso.get("user") or None,
                   host_group=jso.get("host_group") or None)


@dataclass(frozen=True, slots=True)
class Origin:
    """The host and local agent dir of the daemon that started a run: a daemon that
    takes over elsewhere (SPEC §1.14) finds the run's local process there."""

    machine: str  # the host name of the daemon's machine
    agent_dir: str  # its local agent's state dir (absolute)

    def to_jso(self) -> dict[str, Any]:
        return {"machine": self.machine, "agent_dir": self.agent_dir}

    @classmethod
    def from_jso(cls, jso: dict[str, Any]) -> Origin:
        return cls(machine=str(jso["machine"]), agent_dir=str(jso["agent_dir"]))


@dataclass(frozen=True, slots=True)
class RunMeta:
    """The engine's bookkeeping of a run that survives a restart (never shown to clients).

    Stored as a JSON object under the run's `meta`, with the keys a database written by
    earlier versions has.
    """

    schedule: str | None = None  # the schedule that made it, `job_id#index`
    catchup: str | None = None  # that schedule's catch-up mode
    jitter: float = 0.0  # seconds after its schedule time that it is due
    proc: ProcInfo | None = None
    stop_reason: str | None = None  # why it was stopped, once it is stopping
    timed_out: float | None = None  # the timeout (s) that fired, if one did
    origin: Origin | None = None  # who started it; None: written before origins were kept

    def but(self, **changes: Any) -> RunMeta:
        """A copy with some fields changed (it is frozen: runs change by transitions)."""
        return replace(self, **changes)

    def to_jso(self) -> dict[str, Any]:
        jso: dict[str, Any] = {}
        if self.schedule is not None:
            jso["schedule"] = self.schedule
        if self.catchup is not None:
            jso["catchup"] = self.catchup
        if self.jitter:
            jso["jitter"] = self.jitter
        if self.proc is not None:
            jso["proc"] = self.proc.to_jso()
        if self.stop_reason is not None:
            jso["stop"] = {"reason": self.stop_reason}
        if self.timed_out is not None:
            jso["timed_out"] = self.timed_out
        if self.origin is not None:
            jso["origin"] = self.origin.to_jso()
        return jso

    @classmethod
    def from_jso(cls, jso: dict[str, Any] | None) -> RunMeta:
        jso = jso or {}
        stop = jso.get("stop") or {}
        proc = jso.get("proc")
        origin = jso.get("origin")
        return cls(schedule=jso.get("schedule"), catchup=jso.get("catchup"),
                   jitter=float(jso.get("jitter") or 0.0),
                   proc=ProcInfo.from_jso(proc) if proc else None,
                   stop_reason=stop.get("reason"),
                   timed_out=jso.get("timed_out"),
                   origin=Origin.from_jso(origin) if origin else None)


@dataclass(eq=False, slots=True)
class Run:
    """Mutable only through the engine's transition function. Slots: a day of
    scheduled runs (100 000 with 10 000 jobs) is held in memory."""

    run_id: str
    job_id: str
    args: dict[str, str]
    state: State = State.NEW
    # STATE → ISO time, plus schedule, stop, and due (schedule + jitter, when jittered)
    times: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    labels: list[str] = field(default_factory=list)
    program: dict[str, Any] | None = None  # bound: templates rendered
    conditions: list[dict[str, Any]] = field(default_factory=list)
    actions: list[dict[str, Any]] = field(default_factory=list)
    rerun_of: str | None = None
    attempt: int = 1
    exit_code: int | None = None
    signal: str | None = None
    # A tuple until the run has outputs: a day of scheduled runs holds no list each.
    outputs: Sequence[dict[str, Any]] = ()
    ad_hoc: bool = False
    expected: bool = False  # created by a schedule, not by a request
    meta: RunMeta = RunMeta()  # frozen: shared until a transition replaces it
    # The job definition this run was bound with (stored once, deduplicated); held only
    # until the run's first record commits, then read back from the store if needed.
    job: dict[str, Any] | None = field(default=None, repr=False)

    @property
    def instance(self) -> InstanceKey:
        return instance_key(self.job_id, self.args)

    @property
    def schedule_time(self) -> dt.datetime:
        return parse_time(self.times["schedule"])

    @property
    def stop_time(self) -> dt.datetime | None:
        stop = self.times.get("stop")
        return parse_time(stop) if stop else None

    def time_of(self, state: State) -> dt.datetime | None:
        value = self.times.get(state.value)
        return parse_time(value) if value else None

    def set_time(self, key: str, when: dt.datetime) -> None:
        # A new dict, never a change in place: runs may share one (shared_times).
        self.times = {**self.times, key: sys.intern(format_time(when))}

    def to_jso(self, *, with_job: bool = False, shared: bool = False) -> dict[str, Any]:
        """The run as JSON. With `shared`, its dicts and lists are the run's own, not
        copies: for JSON encoded before the run can change (a transition's row, which
        replaces fields, never changes them in place), never for one kept or changed."""
        if shared:
            args, labels, times = self.args, self.labels, self.times
            conditions, actions, outputs = self.conditions, self.actions, self.outputs
        else:
            args, labels, times = dict(self.args), list(self.labels), dict(self.times)
            conditions, actions = list(self.conditions), list(self.actions)
            outputs = list(self.outputs)
        jso: dict[str, Any] = {
            "run_id": self.run_id,
            "job_id": self.job_id,
            "args": args,
            "state": self.state.value,
            "labels": labels,
            "times": times,
            "message": self.message,
            "program": self.program,
            "conditions": conditions,
            "actions": actions,
            "rerun_of": self.rerun_of,
            "attempt": self.attempt,
            "exit_code": self.exit_code,
            "signal": self.signal,
            "outputs": outputs,
            "ad_hoc": self.ad_hoc,
            "expected": self.expected,
            "meta": self.meta.to_jso(),
        }
        if with_job:
            jso["job"] = self.job
        return jso

    def summary(self) -> dict[str, Any]:
        """What event messages and lists carry: enough to draw a row."""
        return summary_of(self.to_jso())

    @classmethod
    def from_jso(cls, jso: dict[str, Any]) -> Run:
        return cls(
            run_id=jso["run_id"],
            job_id=jso["job_id"],
            args=dict(jso.get("args") or {}),
            state=State(jso["state"]),
            times=intern_times(jso.get("times")),
            message=jso.get("message"),
            labels=list(jso.get("labels") or []),
            program=jso.get("program"),
            conditions=list(jso.get("conditions") or []),
            actions=list(jso.get("actions") or []),
            rerun_of=jso.get("rerun_of"),
            attempt=int(jso.get("attempt") or 1),
            exit_code=jso.get("exit_code"),
            signal=jso.get("signal"),
            outputs=list(jso.get("outputs") or ()) or (),
            ad_hoc=bool(jso.get("ad_hoc")),
            expected=bool(jso.get("expected")),
            meta=RunMeta.from_jso(jso.get("meta")),
            job=jso.get("job"),
        )


def intern_times(times: Mapping[str, str] | None) -> dict[str, str]:
    """A run's times with its keys and values interned: runs read back from JSON each
    held their own copy of `schedule`, `new` and of the same few times of day."""
    return {sys.intern(k): sys.intern(v) if isinstance(v, str) else v
            for k, v in (times or {}).items()}


def shared_times(times: dict[str, str], table: dict[tuple[tuple[str, str], ...], dict[str, str]]
                 ) -> dict[str, str]:
    """An equal times dict from `table` (keeping this one there if none is): runs made
    or restored together are mostly due at the same few times of day, and a dict each
    was a third of a scheduled run's memory. Times are replaced, never changed in place."""
    return table.setdefault(tuple(times.items()), times)


SUMMARY_KEYS = ("run_id", "job_id", "args", "state", "labels", "times", "message", "rerun_of",
                "attempt", "exit_code", "signal", "ad_hoc")
_summary_values = operator.itemgetter(*SUMMARY_KEYS)


def summary_of(jso: Mapping[str, Any]) -> dict[str, Any]:
    """The summary (SUMMARY_KEYS, in their order) of a run's JSON."""
    return dict(zip(SUMMARY_KEYS, _summary_values(jso)))


InstanceKey = tuple[str, tuple[tuple[str, str], ...]]


def instance_key(job_id: str, args: dict[str, str]) -> InstanceKey:
    return job_id, tuple(sorted(args.items()))

"""The unfinished runs the engine holds in memory, and the transitions in flight.

A run's fields change only after its transition commits, so between deciding and
committing a run is *becoming* its next state.  Conditions count what runs are
becoming (two waiting runs must not both take the last `max_running` slot while
the first one's `starting` is being written), and transitions of one run queue up
behind each other instead of interleaving.

A scheduled run made by a schedule is held light (`lighten`) until something asks
for it (`get`, its due time): its id, its two times, and a reference to what the
runs of its instance share; a day of 100 000 such runs held a `Run` and a times
dict each (~37 MB, now ~6 MB).  Asked for, it is made a `Run` again, equal in every
field, and kept as one: a run has one object in memory, changed only by its
transitions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import fields, replace

from ..model.run import InstanceKey, Run, instance_key
from ..model.states import FINISHED, State

LIVE = frozenset({State.RUNNING, State.STOPPING})
SMALL = 32  # run ids of an instance kept in a list, past which a set
# The times a scheduled run has from its creation, in their order (to_jso shows it).
LIGHT_TIMES = ("schedule", "scheduled", "new")
# The fields a light run takes from its instance's shared `Run` (all but id and times).
_SHARED_FIELDS = tuple(f.name for f in fields(Run) if f.name not in ("run_id", "times"))


class _Light:
    """A scheduled run, held light: its `Run` is `proto` with its own id and times."""

    __slots__ = ("proto", "schedule", "at")

    def __init__(self, proto: Run, schedule: str, at: str) -> None:
        self.proto = proto  # run_id "" and no times: never a run of the book itself
        self.schedule = schedule
        self.at = at  # when it was created (and scheduled: the same commit)

    def run(self, run_id: str) -> Run:
        return replace(self.proto, run_id=run_id,
                       times={"schedule": self.schedule, "scheduled": self.at, "new": self.at})


class RunBook:
    def __init__(self) -> None:
        self._runs: dict[str, Run | _Light] = {}
        # Runs whose program may be running: what output watching and reconciling poll
        # several times a second, without going over a day of scheduled runs each time.
        self._live: dict[str, Run] = {}
        # An instance's unfinished run ids: a list while short (most instances have a
        # day's few runs; a set of ten is five times their size), a set past SMALL.
        self._by_instance: dict[InstanceKey, list[str] | set[str]] = {}
        self._becoming: dict[str, State] = {}
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def __len__(self) -> int:
        return len(self._runs)

    def __iter__(self) -> Iterator[Run]:
        return iter(self.values())

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def get(self, run_id: str) -> Run | None:
        """The run, made a `Run` again (and kept as one) if it was held light."""
        run = self._runs.get(run_id)
        if isinstance(run, _Light):
            run = self._runs[run_id] = run.run(run_id)
        return run

    def peek(self, run_id: str) -> Run | None:
        """The run to read only: a light one is made for the occasion and stays light (a
        look at a scheduled run, from the API or the TUI, must not undo what that saves)."""
        run = self._runs.get(run_id)
        return run.run(run_id) if isinstance(run, _Light) else run

    def __getitem__(self, run_id: str) -> Run:
        run = self.get(run_id)
        if run is None:
            raise KeyError(run_id)
        return run

    def values(self) -> list[Run]:
        """Every unfinished run, light ones made runs again: for the few who need them all."""
        return [self.get(run_id) for run_id in list(self._runs)]  # type: ignore[misc]

    def of_jobs(self, job_ids: Iterable[str]) -> list[Run]:
        """The unfinished runs of these jobs (a reload's), the others left light."""
        wanted = set(job_ids)
        return [self[run_id] for key, ids in list(self._by_instance.items()) if key[0] in wanted
                for run_id in list(ids)]

    def live(self) -> list[Run]:
        """Runs that are running or stopping."""
        return list(self._live.values())

    def instance_states(self, job_id: str, args: dict[str, str]) -> list[tuple[str, State]]:
        """(id, state or the state it is becoming) of an instance's unfinished runs, what
        conditions count: light runs stay light (they are scheduled, and becoming nothing)."""
        found = []
        for run_id in self._by_instance.get(instance_key(job_id, args), ()):
            run = self._runs[run_id]
            found.append((run_id, State.SCHEDULED if isinstance(run, _Light) else self.state_of(run)))
        return found

    def state_of(self, run: Run) -> State:
        """The state a run has, or is becoming while its transition commits."""
        return self._becoming.get(run.run_id, run.state)

    def remember(self, run: Run) -> None:
        self._runs[run.run_id] = run
        key = run.instance
        ids = self._by_instance.get(key)
        if ids is None:
            self._by_instance[key] = [run.run_id]
        elif isinstance(ids, set):
            ids.add(run.run_id)
        elif run.run_id not in ids:
            ids.append(run.run_id)
            if len(ids) > SMALL:
                self._by_instance[key] = set(ids)
        if run.state in LIVE:
            self._live[run.run_id] = run
        else:
            self._live.pop(run.run_id, None)

    def forget(self, run: Run) -> None:
        self._runs.pop(run.run_id, None)
        self._live.pop(run.run_id, None)
        ids = self._by_instance.get(run.instance)
        if ids is not None:
            if isinstance(ids, set):
                ids.discard(run.run_id)
            elif run.run_id in ids:
                ids.remove(run.run_id)
            if not ids:
                del self._by_instance[run.instance]

    def settle(self, run: Run, *, light: bool = False) -> None:
        """After a committed transition: unfinished runs are kept, finished ones dropped;
        with `light`, a scheduled run is held light (see `lighten`)."""
        if run.state in FINISHED:
            self.forget(run)
        else:
            self.remember(run)
            if light:
                self.lighten(run)

    def lighten(self, run: Run) -> None:
        """Holds a scheduled run light until it is asked for, if it has only the times of
        its creation and nothing is changing it.  Only for a run that no one else holds
        (one just created by a schedule, or restored): the `Run` asked for later is a
        new object, and a holder of this one would change a copy."""
        run_id = run.run_id
        times = run.times
        if (self._runs.get(run_id) is not run or run.state != State.SCHEDULED
                or run_id in self._becoming or run_id in self._locks
                or tuple(times) != LIGHT_TIMES or times["scheduled"] != times["new"]):
            return
        self._runs[run_id] = _Light(self._proto(run), times["schedule"], times["new"])

    def _proto(self, run: Run) -> Run:
        """What `run` shares with another light run of its instance, if every field but
        id and times is the same; else a new one."""
        ids = self._by_instance.get(run.instance, ())
        for other_id in reversed(ids) if isinstance(ids, list) else ids:
            other = self._runs[other_id]
            if isinstance(other, _Light):
                proto = other.proto
                if all(getattr(proto, name) is getattr(run, name) for name in _SHARED_FIELDS):
                    return proto
                break
        return replace(run, run_id="", times={})

    def becoming(self, run: Run, to: State | None) -> None:
        if to is None:
            self._becoming.pop(run.run_id, None)
        else:
            self._becoming[run.run_id] = to

    def turn(self, run_id: str) -> _Turn:
        """One transition of a run at a time (`async with book.turn(run_id):`)."""
        return _Turn(self._locks, run_id)


class _Turn:
    """A per-run lock that exists only while someone holds or wants it."""

    __slots__ = ("_locks", "_run_id", "_lock")

    def __init__(self, locks: dict[str, tuple[asyncio.Lock, int]], run_id: str) -> None:
        self._locks = locks
        self._run_id = run_id

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._run_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[self._run_id] = (lock, users + 1)
        self._lock = lock
        try:
            await lock.acquire()
        except BaseException:
            self._release_user()
            raise

    async def __aexit__(self, *exc: object) -> None:
        self._lock.release()
        self._release_user()

    def _release_user(self) -> None:
        lock, users = self._locks[self._run_id]
        if users <= 1:
            del self._locks[self._run_id]
        else:
            self._locks[self._run_id] = (lock, users - 1)

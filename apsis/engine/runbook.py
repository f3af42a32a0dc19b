"""The unfinished runs the engine holds in memory, and the transitions in flight.

A run's fields change only after its transition commits, so between deciding and
committing a run is *becoming* its next state.  Conditions count what runs are
becoming (two waiting runs must not both take the last `max_running` slot while
the first one's `starting` is being written), and transitions of one run queue up
behind each other instead of interleaving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

from ..model.run import InstanceKey, Run, instance_key
from ..model.states import FINISHED, State

LIVE = frozenset({State.RUNNING, State.STOPPING})
SMALL = 32  # run ids of an instance kept in a list, past which a set


class RunBook:
    def __init__(self) -> None:
        self._runs: dict[str, Run] = {}
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
        return iter(list(self._runs.values()))

    def __contains__(self, run_id: object) -> bool:
        return run_id in self._runs

    def get(self, run_id: str) -> Run | None:
        return self._runs.get(run_id)

    def __getitem__(self, run_id: str) -> Run:
        return self._runs[run_id]

    def values(self) -> list[Run]:
        return list(self._runs.values())

    def live(self) -> list[Run]:
        """Runs that are running or stopping."""
        return list(self._live.values())

    def of_instance(self, job_id: str, args: dict[str, str]) -> list[Run]:
        """Unfinished runs of an instance."""
        return [self._runs[i] for i in self._by_instance.get(instance_key(job_id, args), ())]

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

    def settle(self, run: Run) -> None:
        """After a committed transition: unfinished runs are kept, finished ones dropped."""
        if run.state in FINISHED:
            self.forget(run)
        else:
            self.remember(run)

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

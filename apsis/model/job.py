"""A job: a YAML file's definition, parsed."""

from __future__ import annotations

from array import array
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from ..errors import Location

if TYPE_CHECKING:
    from ..action import Action
    from ..cond import Condition
    from ..program import Program
    from ..schedule.base import Schedule

T = TypeVar("T")
# Distinct rendered values kept to share between runs; templates that print a date
# render new values each day, so the table starts over when full.
MAX_SHARED = 65_536
_shared_values: dict[int, Any] = {}


@dataclass(eq=False, slots=True)
class Job:
    """Slots: 10 000 jobs each held a __dict__, grown again by the values cached in it."""

    job_id: str
    params: list[str]
    program: Program
    schedules: list[Schedule] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    expand: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    ad_hoc: bool = False
    path: str | None = None
    # The job file's text as written, for people reading the job (API, TUI); never in
    # to_jso, so events and the job copy stored with each run stay lean.
    source: str | None = field(default=None, repr=False)
    # Where each part was written (`program`, `schedule.0`, `condition.1`, ...), for checks.
    locs: Mapping[str, Location | None] = field(default_factory=dict, repr=False)

    @property
    def labels(self) -> list[str]:
        return list(self.metadata.get("labels", []))

    @property
    def description(self) -> str | None:
        return self.metadata.get("description")

    def to_jso(self) -> dict[str, Any]:
        """The job as the API and the store show it: every key, parsed and normalised."""
        return {
            "job_id": self.job_id,
            "params": list(self.params),
            "schedule": [s.to_jso() for s in self.schedules],
            "program": self.program.to_jso(),
            "condition": [c.to_jso() for c in self.conditions],
            "action": [a.to_jso() for a in self.actions],
            "metadata": dict(self.metadata),
            "expand": self.expand,
            "ad_hoc": self.ad_hoc,
        }


def shared(value: T) -> T:
    """An equal value (same repr) that runs already hold, else `value`.

    Runs mostly render the same program, conditions, actions, args and labels: those
    of one job alike, and often those of many jobs (10 000 generated jobs rendered one
    program); 100 000 scheduled runs holding a copy each were most of the daemon's
    memory, and a table per job held a copy per job. Shared values are never changed
    in place: a run replaces them.
    """
    # By the hash of the repr (repr tells 1 from True and 1.0): holding the reprs cost
    # more than the values they share. A hash that matches a different value (never in
    # practice) is caught by comparing the values.
    key = hash(repr(value))
    found = _shared_values.get(key)
    if found is None or found != value:
        if len(_shared_values) >= MAX_SHARED:
            _shared_values.clear()
        _shared_values[key] = found = value
    return found


class Locs(Mapping[str, "Location | None"]):
    """Where each part of a job was written, in one file: the dotted paths (a tuple the
    jobs of one pattern share) and each line and column packed in one integer. A dict
    of `Location`s was ~460 bytes a job, for `check-job` only; this is ~150."""

    __slots__ = ("_path", "_keys", "_at")

    def __init__(self, path: str, locs: Mapping[str, Location | None]) -> None:
        self._path = path
        self._keys: tuple[str, ...] = shared(tuple(locs))
        # line << 32 | col, or all ones for a part with no location
        self._at = array("Q", (_NONE if loc is None else loc.line << 32 | loc.col
                               for loc in locs.values()))

    @classmethod
    def of(cls, locs: dict[str, Location | None]) -> Mapping[str, Location | None]:
        """Packed, if every location is in one file (else kept as they are)."""
        paths = {loc.path for loc in locs.values() if loc is not None}
        return cls(paths.pop(), locs) if len(paths) == 1 else locs

    def __getitem__(self, key: str) -> Location | None:
        try:
            at = self._at[self._keys.index(key)]
        except ValueError:
            raise KeyError(key) from None
        return None if at == _NONE else Location(self._path, at >> 32, at & 0xFFFFFFFF)

    def get(self, key: str, default: Any = None) -> Any:
        """Without Mapping.get's KeyError round trip: checks of 10 000 jobs ask often."""
        try:
            at = self._at[self._keys.index(key)]
        except ValueError:
            return default
        return None if at == _NONE else Location(self._path, at >> 32, at & 0xFFFFFFFF)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


_NONE = 2**64 - 1


def bind_args(params: list[str], args: dict[str, Any]) -> dict[str, str]:
    """Keeps the args a job's params name: a run is defined by its params alone."""
    return {p: str(args[p]) for p in params if p in args}


def missing_params(params: list[str], args: Mapping[str, Any]) -> list[str]:
    """The params `args` gives no value, in the job's order: a run without them cannot start."""
    return [p for p in params if p not in args]

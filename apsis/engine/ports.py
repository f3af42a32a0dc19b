"""What the runner needs from the engine, as a protocol instead of the whole Engine.

The engine satisfies it; a test could hand the runner something smaller. Nothing here
changes a run except `transition` (and `transitions`, several in one commit), the
engine's one state-change path.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..model.run import Run
from ..model.states import State


@dataclass(frozen=True, slots=True)
class Step:
    """One of several transitions of a run committed together (`transitions`): what
    `transition` takes but `expect` and `force`, which are the whole call's."""

    to: State
    message: str | None = None
    updates: dict[str, Any] = field(default_factory=dict)  # run fields set with the state
    small_outputs: Sequence[Any] = ()
    before: Sequence[dict[str, Any]] = ()
    at: dt.datetime | None = None


class RunnerConfig(Protocol):
    """The daemon settings the runner reads."""

    database: Path  # big remote outputs are fetched to a temp file beside it
    output_max_bytes: int
    remote_ssh: str | None
    remote_agent_dir: str | None
    ha_host_lost: float  # seconds a run's unreachable agent is waited for, then an error

    @property
    def agent_dir(self) -> Path:
        """The local agent's state dir."""
        ...


class OutputStore(Protocol):
    """Where finished outputs go: big ones now, small ones with the final transition."""

    @staticmethod
    def prepare_small_output(run_id: str, output_id: str, data: bytes,
                             max_bytes: int | None = None) -> Any: ...

    async def store_output_from_file(self, run_id: str, output_id: str,
                                     path: str | os.PathLike[str], *,
                                     max_bytes: int | None) -> dict[str, Any]: ...


class LiveRuns(Protocol):
    """The unfinished runs in memory."""

    def get(self, run_id: str) -> Run | None: ...

    def __iter__(self) -> Iterator[Run]: ...

    def live(self) -> list[Run]:
        """The runs that are running or stopping."""
        ...


class RunnerHost(Protocol):
    """The engine, as the runner sees it."""

    config: RunnerConfig
    store: OutputStore
    url: str  # the API's base URL, given to programs as APSIS_URL

    def host_groups(self) -> Mapping[str, Mapping[str, Any]]:
        """The jobs directory's `host_groups`, as loaded now (it is replaced on reload)."""
        ...

    @property
    def runs(self) -> LiveRuns: ...

    async def transition(self, run: Run, to: State, message: str | None = None, *,
                         expect: set[State] | frozenset[State] | None = None,
                         force: bool = False, small_outputs: Sequence[Any] = (),
                         before: Sequence[dict[str, Any]] = (), at: dt.datetime | None = None,
                         **updates: Any) -> bool: ...

    async def transitions(self, run: Run, steps: Sequence[Step], *,
                          expect: set[State] | frozenset[State] | None = None,
                          force: bool = False) -> bool: ...

    async def run_log(self, run: Run, message: str) -> None: ...

    async def emit(self, events: list[dict[str, Any]]) -> None: ...

    def spawn(self, coro: Awaitable[Any], name: str = "task") -> Any: ...

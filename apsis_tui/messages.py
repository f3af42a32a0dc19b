"""What the App tells its screens, as plain data carried by Textual signals.

The App owns the one event stream; screens subscribe to the signals they care about
(``app.run_signal``, ``app.log_signal``, ...) instead of opening streams of their own,
so a dozen open Run screens cost one websocket, not a dozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ConnectionState = Literal["connecting", "live", "down"]


@dataclass(frozen=True, slots=True)
class RunChanged:
    """A run's summary after a transition (or after a reload)."""

    run: dict[str, Any]


@dataclass(frozen=True, slots=True)
class RunLogged:
    """A new entry of a run's log."""

    run_id: str
    entry: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ConnectionChanged:
    """The link to the daemon went up or down; ``detail`` says why, for the header."""

    state: ConnectionState
    version: str | None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class JobsChanged:
    """Jobs were added, changed, removed or reloaded: job lists should be fetched again."""

    job_id: str | None = None

"""What the model tells the screens that observe it: plain data, no Textual.

The App owns the one event stream and feeds `apsis_tui.model.TuiModel`; screens
subscribe to its topics (``model.runs_changed``, ``model.run_logged``, ...) instead of
opening streams of their own, so a dozen open Run screens cost one websocket, not a dozen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

ConnectionState = Literal["connecting", "live", "down"]


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

"""The TUI's small memory between sessions: a JSON file under XDG_STATE_HOME.

Holds the Runs screen's filter (per daemon URL, since two daemons hold different
jobs). Headless and forgiving: a missing or broken file is an empty state, and a
write that fails is ignored, because losing a filter must never stop the TUI.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any


def default_path() -> Path:
    """``$XDG_STATE_HOME/apsis/tui.json`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "apsis" / "tui.json"


class TuiState:
    """Filters per daemon URL. Each change re-reads the file and changes only its own
    entry, so two TUIs (on two daemons, or the same one) keep each other's filters;
    the file is replaced atomically (a temp file renamed over it), never half written."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_path()
        self._data: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def filter_for(self, url: str) -> str:
        filters = self._data.get("filters")
        value = filters.get(url, "") if isinstance(filters, dict) else ""
        return value if isinstance(value, str) else ""

    def set_filter(self, url: str, text: str) -> None:
        data = self._read()  # what the other TUIs wrote since: merge into it
        filters = data.get("filters")
        if not isinstance(filters, dict):
            filters = data["filters"] = {}
        self._data = data
        if filters.get(url) == text:
            return
        filters[url] = text
        self._write(data)

    def _write(self, data: dict[str, Any]) -> None:
        tmp = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # A temp file of our own (two TUIs writing at once never share one).
            fd, tmp = tempfile.mkstemp(prefix=".tui-", suffix=".tmp", dir=self.path.parent)
            with os.fdopen(fd, "w") as file:
                json.dump(data, file, indent=2, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

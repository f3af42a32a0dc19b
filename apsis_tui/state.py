"""The TUI's small memory between sessions: a JSON file under XDG_STATE_HOME.

Holds the Runs screen's filter (per daemon URL, since two daemons hold different
jobs). Headless and forgiving: a missing or broken file is an empty state, and a
write that fails is ignored, because losing a filter must never stop the TUI.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def default_path() -> Path:
    """``$XDG_STATE_HOME/apsis/tui.json`` (``~/.local/state`` when unset)."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "apsis" / "tui.json"


class TuiState:
    """Read once at start; each change is written at once (atomically, by rename)."""

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
        value = (self._data.get("filters") or {}).get(url, "")
        return value if isinstance(value, str) else ""

    def set_filter(self, url: str, text: str) -> None:
        filters = self._data.setdefault("filters", {})
        if not isinstance(filters, dict):
            filters = self._data["filters"] = {}
        if filters.get(url) == text:
            return
        filters[url] = text
        self._write()

    def _write(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self._data, indent=2, sort_keys=True))
            os.replace(tmp, self.path)
        except OSError:
            pass

"""TUI tests: the real-daemon fixture of the integration tests, a fake client for
snapshots, and a fixed clock and time zone so that what is drawn never changes."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.conftest import (  # noqa: F401 - fixtures
    api, apsis_daemon, apsis_daemon_module, daemon, url)
from tests.tui.factory import BASE


@pytest.fixture(autouse=True)
def _utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Local time is UTC in these tests, so rendered times are the same everywhere."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def state_file(tmp_path: Path) -> Path:
    """Where the TUI remembers its filter, away from the user's own state."""
    return tmp_path / "state" / "tui.json"


def frozen_clock() -> float:
    return BASE


@pytest.fixture
def fake_app(state_file: Path):  # noqa: ANN201 - returns a factory
    """An ApsisApp on a FakeClient, with the clock stopped at BASE."""
    from apsis_tui.app import ApsisApp
    from apsis_tui.state import TuiState
    from tests.tui.fake_client import FakeClient

    def make(**kwargs):  # noqa: ANN003, ANN202
        client = kwargs.pop("client", None) or FakeClient()
        return ApsisApp(client=client, clock=frozen_clock, state=TuiState(state_file),
                        health_interval=3600, ansi=False, **kwargs)

    return make

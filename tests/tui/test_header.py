"""The header says which daemon the TUI is on and its role (SPEC §1.14), at any width."""

from __future__ import annotations

from typing import Any

import pytest

from apsis_tui.widgets.status_bar import StatusBar, daemon_label
from tests.tui.fake_client import FakeClient
from tests.tui.test_app_fake import wait_until


class StandbyClient(FakeClient):
    """A standby of a PostgreSQL cluster, then the leader once it took over."""

    url = "http://sched-b.example.com:5000"
    role = "standby"

    async def alive(self) -> dict[str, Any]:
        return {**await super().alive(), "role": self.role, "leader": "http://sched-a:5000/",
                "epoch": 3}


@pytest.mark.parametrize("width, shown", [(80, "sched-b:5000 standby"),
                                          (120, "http://sched-b.example.com:5000 standby")])
async def test_the_header_shows_the_daemon_and_its_role(fake_app, width, shown) -> None:
    client = StandbyClient()
    app = fake_app(client=client)
    async with app.run_test(size=(width, 24)) as pilot:
        bar = app.screen.query_one(StatusBar)
        await wait_until(pilot, lambda: shown in str(bar.render()))
        line = str(bar.render())
        assert len(line) <= width and "Runs" in line
        client.role = "leader"  # it took over: the header follows at the next probe
        app.watch_health()
        await wait_until(pilot, lambda: shown.replace("standby", "leader") in str(bar.render()))


def test_daemon_labels():
    assert daemon_label("http://127.0.0.1:5000", "single", wide=False) == "127.0.0.1:5000 single"
    assert daemon_label("unix:/run/apsis/s.sock", None, wide=False) == "unix:s.sock"
    assert daemon_label("https://[::1]:5443", "leader", wide=False) == "::1:5443 leader"
    assert daemon_label("", None, wide=True) == ""

"""SVG snapshots of every screen at 80×24 and 120×40, on the fake client with the
clock stopped, so a picture changes only when the UI does.

    pytest tests/tui/test_snapshots.py --snapshot-update   # after a deliberate change
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from apsis_tui.widgets.run_table import RunTable

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((120, 40), id="120x40")]
Before = Callable[..., Awaitable[None]]


FOREVER = {"events", "health"}  # the App's stream and probe never finish


async def settle(pilot, times: int = 4) -> None:  # noqa: ANN001
    """Let the fake client's answers land: pause until the workers that end have
    ended (a loaded machine can be slow), then until animations are done."""
    import time

    deadline = time.monotonic() + 10
    for _ in range(times):
        await pilot.pause()
    while any(w.group not in FOREVER and not w.is_finished for w in pilot.app.workers):
        if time.monotonic() > deadline:
            break
        await pilot.pause(0.02)
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()


def then(*keys: str, run: str | None = None) -> Before:
    """Wait for the data, optionally put the cursor on a run, then press keys."""

    async def before(pilot) -> None:  # noqa: ANN001
        await settle(pilot)
        if run is not None:
            pilot.app.screen.query_one(RunTable).move_to_run(run)
        for key in keys:
            await pilot.press(key)
            await settle(pilot)
        await settle(pilot)

    return before


SCREENS = {
    "runs": then(),
    "runs_filtered": then("slash", *"label:prices", "enter"),
    "run_output": then("enter", run="r8"),
    "run_details": then("enter", "i", run="r4"),
    "run_log": then("enter", "l", run="r3"),
    "jobs": then("2", "down", "down"),
    "job": then("2", "down", "down", "enter"),
    "timeline": then("3"),
    "confirm": then("x", run="r8"),
    "new_run": then("c"),
    "help": then("question_mark"),
}


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", list(SCREENS))
def test_screen(snap_compare, fake_app, name: str, size: tuple[int, int]) -> None:
    assert snap_compare(fake_app(), terminal_size=size, run_before=SCREENS[name])

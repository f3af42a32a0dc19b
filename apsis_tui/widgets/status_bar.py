"""StatusBar: the one-line header of every screen.

It shows the daemon's version and URL, the connection state (the symbol carries
it, colour only adds to it), live counts, the screen's name and the clock. When the
daemon is gone the bar says so and since when: the screens keep showing what they
had, and the App reconnects by itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

from rich.cells import cell_len
from rich.text import Text
from textual.widget import Widget

from apsis.present import state_symbol
from apsis_tui.observe import observe

if TYPE_CHECKING:
    from apsis_tui.app import ApsisApp

INDICATORS = {
    "live": ("●", "live", "status-bar--live"),
    "connecting": ("◌", "connecting", "status-bar--connecting"),
    "down": ("✗", "disconnected", "status-bar--down"),
}


class StatusBar(Widget):
    """Version, connection, counts, screen name and clock, on one line."""

    COMPONENT_CLASSES = {
        "status-bar--live",
        "status-bar--connecting",
        "status-bar--down",
        "status-bar--title",
        "status-bar--running",
        "status-bar--failed",
    }

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $foreground;
        & > .status-bar--title { text-style: bold; }
        & > .status-bar--live { color: $success; text-style: bold; }
        & > .status-bar--connecting { color: $warning; text-style: bold; }
        & > .status-bar--down { color: $error; text-style: bold reverse; }
        & > .status-bar--running { color: $primary; }
        & > .status-bar--failed { color: $error; }
    }
    """

    def __init__(self, screen_name: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.screen_name = screen_name

    @property
    def apsis(self) -> ApsisApp:
        return cast("ApsisApp", self.app)

    def on_mount(self) -> None:
        self.set_interval(1.0, self.refresh)
        observe(self, self.apsis.model.connection_changed, lambda _: self.refresh())

    def _style(self, name: str) -> Any:
        return self.get_component_rich_style(name, partial=True)

    def render(self) -> Text:
        app = self.apsis
        model = app.model
        width = self.size.width or 80
        now = app.clock()
        symbol, word, style = INDICATORS[model.connection]
        if model.connection == "down":
            since = model.down_since
            when = datetime.fromtimestamp(since).strftime("%H:%M:%S") if since else ""
            word = f"disconnected since {when}, retrying" if width >= 90 else f"down {when}"
        running, failed = model.counts()
        left = Text()
        left.append(" Apsis", self._style("status-bar--title"))
        if model.version:
            left.append(f" {model.version}")
        left.append("  ")
        left.append(f"{symbol} {word}", self._style(style))
        left.append("  ")
        left.append(f"{state_symbol('running')} {running}", self._style("status-bar--running"))
        left.append(" running  " if width >= 80 else " ")
        left.append(f"{state_symbol('failure')} {failed}", self._style("status-bar--failed"))
        left.append(" failed/1h" if width >= 80 else "")
        right = Text(f"{self.screen_name}  {datetime.fromtimestamp(now):%H:%M:%S} ")
        if width >= 110 and app.url:
            right = Text(f"{app.url}  ") + right
        gap = width - cell_len(left.plain) - cell_len(right.plain)
        if gap < 1:
            left.truncate(max(0, width - cell_len(right.plain) - 1), overflow="ellipsis")
            gap = 1
        return left + Text(" " * gap) + right

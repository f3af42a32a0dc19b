"""StatusBar: the one-line header of every screen.

It shows the daemon's version, the connection state (the symbol carries it, colour
only adds to it), live counts, which daemon the TUI is on and its role (leader,
standby, single), the screen's name and the clock. When the daemon is gone the bar
says so and since when: the screens keep showing what they had, and the App
reconnects by itself (to another daemon of the list, if there are several).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

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
        clock = f"{self.screen_name}  {datetime.fromtimestamp(now):%H:%M:%S} "
        where = daemon_label(app.daemon_url, app.daemon_role, wide=width >= 110)
        # The words go before the daemon does: where the TUI is matters more.
        for words in (width >= 80, False):
            left = Text()
            left.append(" Apsis", self._style("status-bar--title"))
            if model.version:
                left.append(f" {model.version}")
            left.append("  ")
            left.append(f"{symbol} {word}", self._style(style))
            left.append("  ")
            left.append(f"{state_symbol('running')} {running}", self._style("status-bar--running"))
            left.append(" running  " if words else " ")
            left.append(f"{state_symbol('failure')} {failed}", self._style("status-bar--failed"))
            left.append(" failed/1h" if words else "")
            right = Text(f"{where}  {clock}" if where else clock)
            if cell_len(left.plain) + cell_len(right.plain) < width:
                break
        gap = width - cell_len(left.plain) - cell_len(right.plain)
        if gap < 1:
            left.truncate(max(0, width - cell_len(right.plain) - 1), overflow="ellipsis")
            gap = 1
        return left + Text(" " * gap) + right


def daemon_label(url: str, role: str | None, *, wide: bool) -> str:
    """Which daemon, and its role: the whole URL when there is room, else host:port
    with the host's first label (`sched-a:5000 standby`)."""
    if not url:
        return role or ""
    shown = url
    if not wide:
        if url.startswith(("unix:", "http+unix:")):
            shown = "unix:" + url.rsplit("/", 1)[-1]
        else:
            parts = urlsplit(url if "://" in url else "http://" + url)
            host = parts.hostname or url
            if not host.replace(".", "").isdigit() and ":" not in host:
                host = host.split(".", 1)[0]  # a name, not an address: its first label
            shown = f"{host}:{parts.port}" if parts.port else host
    return f"{shown} {role}" if role else shown

"""OutputView: a run's program output, live, with ANSI colours, follow mode and search.

A run can print a million lines. Decoding all of them with ``Text.from_ansi`` would
take seconds and hundreds of megabytes, so the view keeps the raw bytes in one
``bytearray`` plus an ``array`` of line-start offsets (8 bytes a line), and decodes a
line only when it is drawn, through an LRU cache. Appends are queued and indexed
once per frame. Search runs over the raw bytes with a compiled regex, so it does
not decode anything either.

Limits, chosen for speed: ANSI state does not carry from one line to the next (most
programs reset colours at the end of a line), and a match split by an escape
sequence inside a word is not found.
"""

from __future__ import annotations

import re
from array import array
from bisect import bisect_right
from itertools import accumulate
from typing import ClassVar

from rich.ansi import AnsiDecoder
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.timer import Timer
from textual.widgets import Input, Static

from apsis_tui.widgets._lru import LRUCache

# C0 controls other than tab (and DEL) would move the terminal's cursor if printed.
_CONTROLS = {c: "\ufffd" for c in [*range(9), *range(10, 32), 127]}
_CONTROL_RE = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
_ERASE_LINE_RE = re.compile("\x1b\\[[0-2]?K")  # progress bars clear the line this way
_BACK_WINDOW = 1 << 16  # first window of the backwards search, in bytes


def decode_line(raw: bytes, tab_size: int = 8) -> Text:
    """Decode one line of terminal output into styled Text.

    Invalid UTF-8 becomes U+FFFD. A carriage return moves back to the start of the
    line and later text overwrites earlier text, as a terminal shows progress bars.
    """
    if raw.endswith(b"\r"):
        raw = raw[:-1]  # CRLF line ending
    line = raw.decode("utf-8", errors="replace")
    decoder = AnsiDecoder()  # keeps the SGR state across the \r-separated parts
    parts = line.split("\r")
    text = decoder.decode_line(parts[0])
    for part in parts[1:]:
        over = decoder.decode_line(part)
        length = len(over.plain)
        if length < len(text.plain) and not _ERASE_LINE_RE.search(part):
            text = over + text[length:]
        else:
            text = over
    plain = text.plain
    if _CONTROL_RE.search(plain):
        text = Text(plain.translate(_CONTROLS), style=text.style, spans=list(text.spans))
    if "\t" in plain:
        text.expand_tabs(tab_size)
    text.end = ""
    return text


class OutputView(ScrollView, can_focus=True):
    """Scrollable, append-only program output that decodes only the lines on screen."""

    HELP_NAME = "Output"  # the section title in the keys help

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("end", "follow", "Follow", show=False),
        Binding("f", "toggle_follow", "Follow"),
        Binding("n", "search_next", "Next match", show=False),
        Binding("N", "search_prev", "Previous match", show=False),
        Binding("slash", "request_search", "Search"),
    ]

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "output-view--match",
        "output-view--match-current",
    }

    DEFAULT_CSS = """
    OutputView {
        background: $surface;
        color: $foreground;
        & > .output-view--match { background: $warning 40%; }
        & > .output-view--match-current { background: $warning; color: $text; text-style: bold; }
        &:ansi > .output-view--match { text-style: reverse; }
        &:ansi > .output-view--match-current { text-style: reverse bold; }
    }
    """

    class FollowChanged(Message):
        """Follow mode turned on or off (to show it in a status line)."""

        def __init__(self, output_view: OutputView, follow: bool) -> None:
            super().__init__()
            self.output_view = output_view
            self.follow = follow

        @property
        def control(self) -> OutputView:
            return self.output_view

    class SearchRequested(Message):
        """The user pressed ``/``: the container should ask for a search term."""

        def __init__(self, output_view: OutputView) -> None:
            super().__init__()
            self.output_view = output_view

        @property
        def control(self) -> OutputView:
            return self.output_view

    class SearchMoved(Message):
        """The current match changed; ``line`` is None when nothing matches."""

        def __init__(self, output_view: OutputView, term: str, line: int | None) -> None:
            super().__init__()
            self.output_view = output_view
            self.term = term
            self.line = line

        @property
        def control(self) -> OutputView:
            return self.output_view

    def __init__(
        self,
        data: bytes = b"",
        *,
        follow: bool = True,
        flush_interval: float = 1 / 30,
        tab_size: int = 8,
        cache_size: int = 2048,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
        disabled: bool = False,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, disabled=disabled)
        self._buffer = bytearray()
        self._starts = array("q", [0])  # offset of each line's first byte
        self._max_width = 0  # longest line in bytes: a cheap bound for the width
        self._pending: list[bytes] = [bytes(data)] if data else []
        self._flush_timer: Timer | None = None
        self.flush_interval = flush_interval
        self.tab_size = tab_size
        self._follow = follow
        self._texts: LRUCache[int, Text] = LRUCache(cache_size)
        self._strips: LRUCache[int, tuple[int, Strip]] = LRUCache(cache_size)
        self._generation = 0  # bumped when highlighting or styles change
        self._term = ""
        self._bytes_re: re.Pattern[bytes] | None = None
        self._text_re: re.Pattern[str] | None = None
        self._match_line: int | None = None
        self._match_count: tuple[int, int] | None = None  # (buffer length, count)
        self._empty_message = ""
        if data:
            self._index(self._take_pending())

    # -- data ------------------------------------------------------------------------

    @property
    def line_count(self) -> int:
        """Lines to show: a final line without a newline counts, an empty one not."""
        count = len(self._starts)
        if self._starts[-1] == len(self._buffer):
            count -= 1
        return count

    @property
    def byte_count(self) -> int:
        return len(self._buffer) + sum(map(len, self._pending))

    def append(self, data: bytes) -> None:
        """Queue output; it is indexed and painted on the next frame."""
        if not data:
            return
        self._pending.append(bytes(data))
        if self._flush_timer is None and self.is_mounted:
            self._flush_timer = self.set_timer(self.flush_interval, self.flush)

    def flush(self) -> None:
        """Index queued output now, and scroll to the end when following."""
        self._flush_timer = None
        if not self._pending:
            return
        self._index(self._take_pending())
        self._update_virtual_size()
        if self._follow:
            self._scroll_to_end()
        self.refresh()

    def clear(self) -> None:
        """Forget all output (a rerun, or a reset of the stream)."""
        self._pending.clear()
        self._buffer = bytearray()
        self._starts = array("q", [0])
        self._max_width = 0
        self._texts.clear()
        self._strips.clear()
        self._match_line = None
        self._match_count = None
        self._update_virtual_size()
        self.scroll_to(x=0, y=0, animate=False)
        self.refresh()

    def line_bytes(self, index: int) -> bytes:
        """The raw bytes of a line, without its newline."""
        start = self._starts[index]
        end = self._starts[index + 1] - 1 if index + 1 < len(self._starts) else len(self._buffer)
        return bytes(self._buffer[start:end])

    def line_text(self, index: int) -> Text:
        """A line decoded with its ANSI styles (cached)."""
        text = self._texts.get(index)
        if text is None:
            text = decode_line(self.line_bytes(index), self.tab_size)
            self._texts.set(index, text)
        return text

    def _take_pending(self) -> bytes:
        data = b"".join(self._pending)
        self._pending.clear()
        return data

    def _index(self, data: bytes) -> None:
        """Append bytes and record where new lines start (C-speed split and sums)."""
        base = len(self._buffer)
        last_start = self._starts[-1]
        if last_start < base:  # the unfinished last line grows: forget its rendering
            self._texts.discard(len(self._starts) - 1)
            self._strips.discard(len(self._starts) - 1)
        self._buffer += data
        pieces = data.split(b"\n")
        lengths = list(map(len, pieces))
        lengths[0] += base - last_start
        self._max_width = max(self._max_width, max(lengths))
        ends = accumulate((length + 1 for length in map(len, pieces[:-1])), initial=base)
        next(ends)  # skip ``base`` itself
        self._starts.extend(ends)
        self._match_count = None

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self._max_width, self.line_count)

    @property
    def empty_message(self) -> str:
        return self._empty_message

    @empty_message.setter
    def empty_message(self, text: str) -> None:
        """What the view says while it holds no output ("no output yet"), dimmed."""
        if text != self._empty_message:
            self._empty_message = text
            self.refresh()

    def _scroll_to_end(self) -> None:
        """To the last line now, and again once a layout has taken the new size in
        (a hidden tab, or output that arrived before the first layout)."""
        self.scroll_to(y=self.max_scroll_y, animate=False)
        self.call_after_refresh(
            lambda: self._follow and self.scroll_to(y=self.max_scroll_y, animate=False))

    # -- follow ----------------------------------------------------------------------

    @property
    def follow(self) -> bool:
        return self._follow

    @follow.setter
    def follow(self, value: bool) -> None:
        if value != self._follow:
            self._follow = value
            self.post_message(self.FollowChanged(self, value))
        if value:
            self._scroll_to_end()

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        # Scrolling up away from the end pauses following; a resize that clamps the
        # offset to the (new) end does not.
        if self._follow and new_value < old_value and round(new_value) < self.max_scroll_y:
            self.follow = False

    def action_follow(self) -> None:
        self.follow = True

    def action_toggle_follow(self) -> None:
        self.follow = not self._follow

    # -- search ----------------------------------------------------------------------

    @property
    def search_term(self) -> str:
        return self._term

    @property
    def match_line(self) -> int | None:
        """The line of the current match."""
        return self._match_line

    @property
    def match_count(self) -> int:
        """How many times the term occurs in the output (computed once per append)."""
        if self._bytes_re is None:
            return 0
        if self._match_count is None or self._match_count[0] != len(self._buffer):
            self._match_count = (len(self._buffer), len(self._bytes_re.findall(self._buffer)))
        return self._match_count[1]

    def search(self, term: str) -> int | None:
        """Highlight ``term`` (case-insensitive unless it has capitals) and go to the
        first match at or below the top of the screen. Returns its line."""
        self.flush()
        self._term = term
        self._generation += 1
        self._match_line = None
        self._match_count = None
        if not term:
            self._bytes_re = self._text_re = None
            self.refresh()
            return None
        flags = 0 if any(c.isupper() for c in term) else re.IGNORECASE
        self._bytes_re = re.compile(re.escape(term.encode("utf-8")), flags)
        self._text_re = re.compile(re.escape(term), flags)
        return self._go_to(
            self._find_forward(self._starts[min(self.scroll_offset.y, self._last())])
        )

    def search_next(self) -> int | None:
        """Go to the next line with a match, wrapping at the end."""
        if self._bytes_re is None:
            return None
        line = self._match_line if self._match_line is not None else self.scroll_offset.y - 1
        after = line + 1
        start = self._starts[after] if after < len(self._starts) else len(self._buffer)
        return self._go_to(self._find_forward(start))

    def search_prev(self) -> int | None:
        """Go to the previous line with a match, wrapping at the start."""
        if self._bytes_re is None:
            return None
        line = self._match_line if self._match_line is not None else self.scroll_offset.y
        end = self._starts[min(line, len(self._starts) - 1)]
        found = self._find_backward(end)
        if found is None:
            found = self._find_backward(len(self._buffer))
        return self._go_to(found)

    def clear_search(self) -> None:
        self.search("")

    def _last(self) -> int:
        return max(0, len(self._starts) - 1)

    def _find_forward(self, start: int) -> int | None:
        """The line of the first match at or after byte ``start``, wrapping once."""
        assert self._bytes_re is not None
        match = self._bytes_re.search(self._buffer, start)
        if match is None and start:
            match = self._bytes_re.search(self._buffer, 0)
        return None if match is None else self._line_of(match.start())

    def _find_backward(self, end: int) -> int | None:
        """The line of the last match ending before byte ``end``: regexes only search
        forwards, so try growing windows below ``end`` instead of the whole prefix."""
        assert self._bytes_re is not None
        window = _BACK_WINDOW
        while True:
            low = max(0, end - window)
            last = None
            for match in self._bytes_re.finditer(self._buffer, low, end):
                last = match
            if last is not None:
                return self._line_of(last.start())
            if low == 0:
                return None
            window *= 4

    def _line_of(self, offset: int) -> int:
        return bisect_right(self._starts, offset) - 1

    def _go_to(self, line: int | None) -> int | None:
        self._match_line = line
        self._generation += 1
        if line is not None:
            if self._follow:
                self.follow = False  # looking at a match: don't scroll away from it
            self._scroll_line_into_view(line)
        self.refresh()
        self.post_message(self.SearchMoved(self, self._term, line))
        return line

    def _scroll_line_into_view(self, line: int) -> None:
        height = self.scrollable_content_region.height
        top = self.scroll_offset.y
        if not top <= line < top + height:
            self.scroll_to(y=max(0, line - height // 2), animate=False)

    # -- rendering -------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        index = self.scroll_offset.y + y
        base = self.rich_style
        if index >= self.line_count:
            if index == 0 and self._empty_message and not self._pending:
                text = Text(f" {self._empty_message}", style="dim", end="")
                return Strip(list(text.render(self.app.console))).apply_style(base).crop_extend(
                    0, width, base)
            return Strip.blank(width, base)
        cached = self._strips.get(index)
        if cached is not None and cached[0] == self._generation:
            strip = cached[1]
        else:
            strip = self._render_full_line(index)
            self._strips.set(index, (self._generation, strip))
        x = self.scroll_offset.x
        return strip.crop_extend(x, x + width, base)

    def _render_full_line(self, index: int) -> Strip:
        text = self.line_text(index)
        if self._text_re is not None and self._text_re.search(text.plain):
            name = (
                "output-view--match-current" if index == self._match_line else "output-view--match"
            )
            style = self.get_component_rich_style(name, partial=True)
            text = text.copy()
            for match in self._text_re.finditer(text.plain):
                text.stylize(style, match.start(), match.end())
        segments = list(text.render(self.app.console))
        return Strip(segments).apply_style(self.rich_style)

    def notify_style_update(self) -> None:
        self._generation += 1  # theme changed: re-render with new colours
        super().notify_style_update()

    def on_mount(self) -> None:
        self._update_virtual_size()
        if self._pending:
            self._flush_timer = self.set_timer(self.flush_interval, self.flush)
        if self._follow:
            self._scroll_to_end()

    def on_resize(self, event: events.Resize) -> None:
        if self._follow:
            self._scroll_to_end()

    def action_search_next(self) -> None:
        self.search_next()

    def action_search_prev(self) -> None:
        self.search_prev()

    def action_request_search(self) -> None:
        self.post_message(self.SearchRequested(self))


class OutputPane(Vertical):
    """An OutputView with a search box (``/``) and a status line: what the Run screen
    embeds."""

    HELP_NAME = "Output search"  # the section title in the keys help

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close_search", "Close search", show=False),
    ]

    DEFAULT_CSS = """
    OutputPane {
        height: 1fr;
        & > OutputView { height: 1fr; }
        & > Input.output-search { display: none; height: 3; }
        & > Input.output-search.-open { display: block; }
        & > .output-status { height: 1; background: $panel; color: $text-muted; }
    }
    """

    def __init__(
        self,
        data: bytes = b"",
        *,
        follow: bool = True,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._data = data
        self._follow = follow
        self._label = ""
        self._complete = False

    def set_label(self, label: str) -> None:
        """What the status line names first: which output is shown, when a run has several."""
        self._label = label
        if self.is_mounted:
            self._update_status()

    @property
    def view(self) -> OutputView:
        return self.query_one(OutputView)

    def compose(self) -> ComposeResult:
        yield OutputView(self._data, follow=self._follow)
        yield Input(placeholder="search output (Enter: find, Esc: close)", classes="output-search")
        yield Static("", classes="output-status")

    def on_mount(self) -> None:
        self._update_status()

    def append(self, data: bytes) -> None:
        self.view.append(data)

    def set_complete(self, complete: bool) -> None:
        """The output is all there (the run finished): the status says so, instead of
        "following" output that will never grow."""
        self._complete = complete
        self.view.flush()
        self._update_status()

    def open_search(self) -> None:
        search = self.query_one(".output-search", Input)
        search.add_class("-open")
        search.value = self.view.search_term
        search.focus()

    @property
    def search_open(self) -> bool:
        return self.query_one(".output-search", Input).has_class("-open")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Esc closes an open search; with none open it goes on to the screen (back).
        if action == "close_search":
            return self.search_open
        return True

    def action_close_search(self) -> None:
        search = self.query_one(".output-search", Input)
        if search.has_class("-open"):
            search.remove_class("-open")
            self.view.focus()

    def on_output_view_search_requested(self, event: OutputView.SearchRequested) -> None:
        event.stop()
        self.open_search()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.view.search(event.value)
        self.action_close_search()

    def on_output_view_follow_changed(self, event: OutputView.FollowChanged) -> None:
        self._update_status()

    def on_output_view_search_moved(self, event: OutputView.SearchMoved) -> None:
        self._update_status()

    def _update_status(self) -> None:
        view = self.view
        if self._complete:
            lines = f"{view.line_count:,} line{'' if view.line_count == 1 else 's'}"
            end = "at the end" if view.follow else "End: go to the end"
            parts = [f"run finished · {lines} · {end}"]
        else:
            parts = ["following" if view.follow else "paused (End or f to follow)"]
        if self._label:
            parts.insert(0, self._label)
        if view.search_term:
            if view.match_line is None:
                parts.append(f"/{view.search_term}: no match")
            else:
                parts.append(
                    f"/{view.search_term}: {view.match_count} matches, "
                    f"line {view.match_line + 1} (n/N)"
                )
        self.query_one(".output-status", Static).update(Text("  ·  ".join(parts)))

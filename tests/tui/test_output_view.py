"""OutputView and OutputPane: ANSI, follow mode, search, bad bytes, big outputs."""

from __future__ import annotations

from rich.segment import Segment
from textual import events
from textual.app import App, ComposeResult

from apsis_tui.widgets.output_view import OutputPane, OutputView, decode_line


class ViewApp(App[None]):
    def __init__(self, data: bytes = b"", follow: bool = True) -> None:
        super().__init__()
        self.data = data
        self.follow = follow
        self.follow_events: list[bool] = []

    def compose(self) -> ComposeResult:
        yield OutputView(self.data, follow=self.follow)

    def on_output_view_follow_changed(self, event: OutputView.FollowChanged) -> None:
        self.follow_events.append(event.follow)


class PaneApp(App[None]):
    def compose(self) -> ComposeResult:
        yield OutputPane()


def lines(n: int, start: int = 0, word: str = "line") -> bytes:
    return b"".join(b"%s %d\n" % (word.encode(), i) for i in range(start, start + n))


def screen(view: OutputView) -> list[str]:
    return [view.render_line(y).text for y in range(view.scrollable_content_region.height)]


def segments_of(view: OutputView, y: int) -> list[Segment]:
    return list(view.render_line(y))


async def test_ansi_colours_become_styled_segments() -> None:
    data = b"plain \x1b[31mred\x1b[0m \x1b[1;32mbold green\x1b[0m\n"
    app = ViewApp(data)
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        view = app.query_one(OutputView)
        assert view.line_count == 1
        assert screen(view)[0].startswith("plain red bold green")
        by_text = {seg.text: seg.style for seg in segments_of(view, 0)}
        plain, red, green = by_text["plain "], by_text["red"], by_text["bold green"]
        assert red.color is not None and red.color != plain.color
        assert green.bold and green.color not in (None, plain.color, red.color)
        assert "\x1b" not in "".join(screen(view))


def test_decode_line_handles_cr_crlf_controls_and_bad_utf8() -> None:
    assert decode_line(b"abc\r").plain == "abc"  # CRLF
    assert decode_line(b"10%\r20%\rdone").plain == "done"
    assert decode_line(b"progress 10%\rok").plain == "okogress 10%"  # as a terminal shows
    assert decode_line(b"progress 10%\r\x1b[2Kok").plain == "ok"  # erased line
    assert decode_line(b"a\x00b").plain == "a\ufffdb"
    assert decode_line(b"\xff\xfeok\xc3").plain == "\ufffd\ufffdok\ufffd"
    assert decode_line(b"a\tb").plain == "a       b"
    styled = decode_line(b"\x1b[31mred\rR")
    assert styled.plain == "Red" and all(span.style.color for span in styled.spans)


async def test_non_utf8_bytes_and_split_characters_do_not_crash() -> None:
    app = ViewApp()
    async with app.run_test(size=(60, 10)) as pilot:
        view = app.query_one(OutputView)
        view.append(b"\xff\xfe\xfd garbage \x80\n")
        view.append("caf\u00e9 ".encode()[:4])  # "caf" + first byte of é
        view.append("caf\u00e9 ".encode()[4:] + b"\x1b[999;999;999mweird\x1b[\n")
        view.flush()
        await pilot.pause()
        assert view.line_count == 2
        text = screen(view)
        assert text[0].startswith("\ufffd\ufffd\ufffd garbage \ufffd")
        assert text[1].startswith("caf\u00e9 weird")


async def test_lines_partial_and_trailing_newline() -> None:
    app = ViewApp()
    async with app.run_test(size=(60, 10)) as pilot:
        view = app.query_one(OutputView)
        view.append(b"one\ntw")
        view.flush()
        assert view.line_count == 2
        assert screen(view)[1].startswith("tw ")
        view.append(b"o\n")
        view.flush()
        assert view.line_count == 2  # the trailing newline adds no empty line
        assert view.line_text(1).plain == "two"
        await pilot.pause()
        assert screen(view)[:2] == ["one".ljust(60), "two".ljust(60)]


async def test_follow_pause_and_resume() -> None:
    app = ViewApp(lines(100))
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        view = app.query_one(OutputView)
        view.focus()
        assert view.follow
        assert view.scroll_offset.y == view.max_scroll_y == 100 - 10
        assert screen(view)[-1].startswith("line 99 ")
        view.append(lines(50, 100))
        await pilot.pause(0.1)  # appends are flushed on the next frame
        assert view.line_count == 150
        assert screen(view)[-1].startswith("line 149 ")
        # The user scrolls up: following pauses and new output no longer moves the view.
        await pilot.press("up", "up", "up")
        assert not view.follow
        top = view.scroll_offset.y
        view.append(lines(50, 150))
        view.flush()
        await pilot.pause()
        assert view.scroll_offset.y == top
        await pilot.press("end")
        assert view.follow
        await pilot.pause()
        assert screen(view)[-1].startswith("line 199 ")
        await pilot.press("f")
        assert not view.follow
        await pilot.press("f")
        assert view.follow
        assert app.follow_events == [False, True, False, True]


async def test_mouse_scroll_up_pauses_follow() -> None:
    app = ViewApp(lines(100))
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        view = app.query_one(OutputView)
        view.post_message(events.MouseScrollUp(view, 5, 5, 0, -1, 0, False, False, False))
        await pilot.pause()
        assert view.scroll_offset.y < view.max_scroll_y
        assert not view.follow


async def test_no_follow_stays_at_top() -> None:
    app = ViewApp(lines(100), follow=False)
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        view = app.query_one(OutputView)
        view.append(lines(10, 100))
        view.flush()
        assert view.scroll_offset.y == 0


async def test_search_next_prev_and_highlight() -> None:
    data = b"".join(
        (b"the NEEDLE is here %d\n" % i) if i % 100 == 50 else (b"hay %d\n" % i)
        for i in range(1000)
    )
    app = ViewApp(data, follow=False)
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        view = app.query_one(OutputView)
        view.focus()
        assert view.search("needle") == 50  # lower case: case-insensitive
        assert view.match_count == 10
        assert not view.follow
        assert 50 in range(view.scroll_offset.y, view.scroll_offset.y + 10)
        await pilot.press("n")
        assert view.match_line == 150
        await pilot.press("n", "n")
        assert view.match_line == 350
        await pilot.press("N")
        assert view.match_line == 250
        # The current match is highlighted with its own style.
        y = view.match_line - view.scroll_offset.y
        segs = {seg.text: seg.style for seg in segments_of(view, y)}
        current = view.get_component_rich_style("output-view--match-current", partial=True)
        assert segs["NEEDLE"].bgcolor == current.bgcolor is not None
        # Wrap around at both ends.
        view.search_prev()
        view.search_prev()
        assert view.match_line == 50
        view.search_prev()
        assert view.match_line == 950
        view.search_next()
        assert view.match_line == 50
        assert view.search("Needle") is None  # capitals: case-sensitive
        assert view.search("absent") is None and view.match_count == 0
        view.clear_search()
        assert view.search_term == ""


async def test_search_backwards_across_a_big_gap() -> None:
    data = b"needle first\n" + lines(50_000, word="x" * 20) + b"needle last\n"
    app = ViewApp(data, follow=False)
    async with app.run_test(size=(60, 10)):
        view = app.query_one(OutputView)
        assert view.search("needle") == 0
        assert view.search_prev() == 50_001
        assert view.search_prev() == 0


async def test_many_lines_are_indexed_not_decoded() -> None:
    data = b"\x1b[33mwarn\x1b[0m line\n" * 300_000
    app = ViewApp(data)
    async with app.run_test(size=(60, 10)) as pilot:
        await pilot.pause()
        view = app.query_one(OutputView)
        assert view.line_count == 300_000
        assert len(view._texts) <= 20  # only what was drawn was decoded
        assert screen(view)[-1].startswith("warn line")


async def test_horizontal_scroll_for_long_lines() -> None:
    app = ViewApp(b"a" * 100 + b"END\n", follow=False)
    async with app.run_test(size=(40, 5)) as pilot:
        await pilot.pause()
        view = app.query_one(OutputView)
        assert view.virtual_size.width >= 103
        view.scroll_to(x=view.max_scroll_x, animate=False)
        await pilot.pause()
        assert "END" in screen(view)[0]


async def test_clear() -> None:
    app = ViewApp(lines(100))
    async with app.run_test(size=(60, 10)):
        view = app.query_one(OutputView)
        view.clear()
        assert view.line_count == 0
        assert screen(view)[0].strip() == ""


async def test_pane_slash_opens_search_and_status_shows_matches() -> None:
    app = PaneApp()
    async with app.run_test(size=(60, 16)) as pilot:
        pane = app.query_one(OutputPane)
        pane.append(lines(200))
        pane.view.flush()
        pane.view.focus()
        await pilot.press("slash")
        await pilot.pause()
        assert app.focused is not None and app.focused.has_class("output-search")
        await pilot.press(*"line 12", "enter")
        await pilot.pause()
        assert pane.view.search_term == "line 12"
        assert pane.view.match_line == 12
        assert app.focused is pane.view
        status = str(pane.query_one(".output-status").render())
        assert "11 matches" in status and "line 13" in status  # line 12, 120..129
        await pilot.press("slash", "escape")
        assert app.focused is pane.view

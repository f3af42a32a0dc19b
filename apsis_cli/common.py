"""What every command shares: user errors without tracebacks, Ctrl-C, broken pipes."""

from __future__ import annotations

import contextlib
import io
import os
import sys
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from .exitcodes import ExitStatus


class UserError(click.ClickException):
    """One line on stderr, with a hint, and an exit code; never a traceback."""

    def __init__(self, message: str, hint: str | None = None, code: int = ExitStatus.USAGE) -> None:
        super().__init__(message)
        self.hint = hint
        self.exit_code = int(code)  # type: ignore[misc]  # Click reads it per instance

    def show(self, file: Any = None) -> None:
        show_error(self.message, self.hint)


def show_error(message: str, hint: str | None) -> None:
    """`error: MESSAGE (hint: HINT)`: one line, so scripts can grep and log it whole."""
    text = f"error: {message}"
    if hint:
        text += f" (hint: {hint})"
    click.echo(text, err=True)


class ApsisGroup(click.Group):
    """A Click group whose commands end quietly (exit 0) when stdout's reader goes away.

    Click itself would turn a broken pipe into exit 1; `apsis runs | head` is not an error.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            _quiet_broken_pipe()


def run_main(group: click.Group, prog_name: str) -> NoReturn:
    """Runs a Click group the way every Apsis command behaves on Ctrl-C and broken pipes."""
    try:
        # Not standalone: Click returns the code of `Exit` (what commands raise to set
        # their exit status) instead of exiting, and raises the errors handled below.
        result = group.main(prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort:
        # Click has already ended the terminal's ^C line.
        sys.exit(ExitStatus.INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("", err=True)
        sys.exit(ExitStatus.INTERRUPTED)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.format_message())  # `apsis` alone: the help, as asked
        sys.exit(0)
    except click.UsageError as exc:
        # Click's own form is usage + a blank line + the error; one line is what we promise.
        ctx = exc.ctx
        where = ctx.command_path if ctx is not None else prog_name
        show_error(exc.format_message(), f"see '{where} --help'")
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        _quiet_broken_pipe()
    sys.exit(int(result) if isinstance(result, int) else 0)


async def follow_while_read(stream: Any, write: Any, *, every: float = 0.5) -> None:
    """Writes each item of an endless stream until it ends or stdout's reader goes away.

    A follower that waits for the next event would only learn at its next write that
    `| head -n 1` has exited, which may be never; like `tail -f`, it watches the pipe
    (POLLERR once its reader is gone) and ends then, as a broken pipe, closing the
    stream's socket on the way out.
    """
    import asyncio
    import select
    from contextlib import aclosing

    poller = select.poll()
    poller.register(sys.stdout.fileno(), 0)  # only POLLERR/POLLHUP/POLLNVAL are reported

    async def copy() -> None:
        async with aclosing(stream) as items:
            async for item in items:
                write(item)

    task = asyncio.ensure_future(copy())
    try:
        while not task.done():
            if poller.poll(0):
                raise BrokenPipeError
            await asyncio.wait({task}, timeout=every)
        task.result()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def _quiet_broken_pipe() -> NoReturn:
    # Python flushes stdout at exit and would complain again; point it at devnull.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    sys.exit(0)


# Set from the global options: --color always|never|auto, --no-pager.
COLOR = "auto"
NO_PAGER = False


def color_wanted(stream: Any = None) -> bool:
    """Colour for `stream` (stdout): `--color` if given; else never with NO_COLOR set,
    always with FORCE_COLOR or CLICOLOR_FORCE set (not to 0), else only on a terminal."""
    if COLOR != "auto":
        return COLOR == "always"
    if "NO_COLOR" in os.environ:
        return False
    if any(os.environ.get(name, "0") not in ("", "0") for name in ("FORCE_COLOR", "CLICOLOR_FORCE")):
        return True
    stream = stream or sys.stdout
    return hasattr(stream, "isatty") and stream.isatty()


class _Screen(io.StringIO):
    """What a paged command prints, held back as if it were the terminal."""

    def isatty(self) -> bool:
        return True


@contextlib.contextmanager
def paged() -> Iterator[None]:
    """On a terminal, output taller than it goes through $PAGER (`less -FRX` by default:
    colours kept, and it quits at once when the text fits after all)."""
    if NO_PAGER or not sys.stdout.isatty():
        yield
        return
    real, screen = sys.stdout, _Screen()
    sys.stdout = screen
    try:
        yield
    finally:
        sys.stdout = real
        _show(screen.getvalue())


def _show(text: str) -> None:
    import shutil
    import subprocess

    pager = os.environ.get("PAGER", "less").strip()
    if text.count("\n") < shutil.get_terminal_size().lines - 1 or pager in ("", "cat"):
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    env = {**os.environ}
    env.setdefault("LESS", "FRX")
    try:
        subprocess.run(pager, shell=True, input=text.encode(), env=env, check=False)
    except OSError:
        sys.stdout.write(text)


def echo_json(value: Any) -> None:
    import json

    click.echo(json.dumps(value, ensure_ascii=False))



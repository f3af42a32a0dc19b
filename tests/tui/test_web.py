"""`apsis tui --web` in a real headless browser: Debian's chromium opens the page that
textual-serve serves, and we read the terminal it draws until the Runs table shows a run
of the daemon the command was pointed at (with its token: the daemon refuses without).

The browser is driven over the Chrome DevTools Protocol with `websockets`; the terminal
(xterm.js, drawn on a canvas) is read from its buffer, found with Runtime.queryObjects.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.conftest import free_port
from tests.integration.helpers import create, http

CHROMIUM = shutil.which("chromium")
APSIS = str(Path(sys.executable).parent / "apsis")
TOKEN = "web-read-token-0123456789"
OPERATE = "web-operate-token-0123456789"

pytestmark = pytest.mark.timeout(120)

# The textual-serve page keeps its terminal object in a closure; every object reaches
# Object.prototype, so Runtime.queryObjects finds it among them by its shape.
READ_SCREEN = """
function () {
  const host = this.find(o => o && o.terminal && o.terminal.buffer && o.websocket_url);
  if (!host) return null;
  const buffer = host.terminal.buffer.active, lines = [];
  for (let i = 0; i < host.terminal.rows; i++) lines.push(buffer.getLine(i).translateToString(true));
  return lines.join("\\n");
}
"""


def stop_group(proc: subprocess.Popen) -> None:
    """SIGTERM the process group (the server and the TUI it spawned), SIGKILL if it lingers."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(5)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_for(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)
    return result


class Page:
    """One browser tab over CDP: calls answered by id, events skipped."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=15))
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message["result"]

    def screen(self) -> str | None:
        """The terminal's visible text, or None before the page has made it."""
        try:
            root = self.call("Runtime.evaluate", expression="Object.prototype")["result"]
            objects = self.call("Runtime.queryObjects", prototypeObjectId=root["objectId"])
            result = self.call("Runtime.callFunctionOn", objectId=objects["objects"]["objectId"],
                               functionDeclaration=READ_SCREEN, returnByValue=True)
        except RuntimeError:  # the page is still loading: no context yet
            return None
        finally:
            self.call("Runtime.releaseObjectGroup", objectGroup="")
        return result["result"].get("value")

    def key(self, text: str) -> None:
        """Type a key into the terminal, as a person would after clicking it."""
        self.call("Runtime.evaluate",
                  expression="document.querySelector('.xterm-helper-textarea').focus()")
        for kind in ("keyDown", "keyUp"):
            self.call("Input.dispatchKeyEvent", type=kind, text=text if kind == "keyDown" else "",
                      key=text)


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[str], Page]]:
    """Opens a URL in headless chromium; yields the page's CDP session; kills the browser."""
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium): no browser to test in")
    from websockets.sync.client import connect

    procs: list[subprocess.Popen] = []
    sockets = contextlib.ExitStack()

    def open_page(url: str) -> Page:
        profile = tmp_path / f"chromium{len(procs)}"
        # --no-sandbox: CI runs as root, where chromium's sandbox refuses to start.
        procs.append(subprocess.Popen(
            [CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--remote-debugging-port=0", f"--user-data-dir={profile}", "--window-size=1280,800",
             url], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        port_file = profile / "DevToolsActivePort"
        port = wait_for(lambda: port_file.exists() and port_file.read_text().split()[:1],
                        "chromium's DevTools port")[0]
        targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
        page = next(t for t in targets if t["type"] == "page")
        return Page(sockets.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=10)))

    try:
        yield open_page
    finally:
        sockets.close()
        for proc in procs:
            stop_group(proc)


@pytest.fixture
def web_tui(tmp_path: Path) -> Iterator[Callable[..., str]]:
    """Starts `apsis ... tui --web` on a free port; returns the URL it says to open."""
    procs: list[subprocess.Popen] = []

    def start(*global_args: str) -> str:
        port = free_port()
        env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")}
        env.pop("APSIS_URL", None)
        env.pop("APSIS_TOKEN", None)
        proc = subprocess.Popen([APSIS, *global_args, "tui", "--web", "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, start_new_session=True)
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the server's first words: the URL to open
        url = f"http://127.0.0.1:{port}"
        assert f"open {url} in a browser" in line, line
        return url

    try:
        yield start
    finally:
        for proc in procs:
            stop_group(proc)


def test_browser_shows_the_runs_table_of_the_daemon(apsis_daemon, web_tui, browser) -> None:  # noqa: ANN001
    # Two jobs: with one, the table folds its job column away.
    daemon = apsis_daemon({"web/hello": "program: {type: no-op}\n",
                           "web/bye": "program: {type: no-op}\n"},
                          config=f"api: {{tokens: {{{TOKEN}: read, {OPERATE}: operate}}}}\n",
                          token=TOKEN)
    with http(daemon) as anonymous:
        assert anonymous.get("/runs").status_code == 401  # the page must carry the token
    with http(daemon, OPERATE) as api:
        runs = [create(api, job_id)[0] for job_id in ("web/hello", "web/bye")]
    page = browser(web_tui("--url", daemon.url, "--token", TOKEN))

    rows = [f"{run['run_id']} " for run in runs] + ["web/hello", "web/bye"]
    screen = wait_for(lambda: (text := page.screen()) and all(r in text for r in rows) and text,
                      "the runs in the table")
    assert all(title in screen for title in ("run", "state", "job"))  # the table's header

    page.key("2")  # keys typed in the browser reach the app: the Jobs screen
    wait_for(lambda: "▼ web/" in (page.screen() or ""), "the Jobs screen's tree")


def run_apsis(*args: str, prelude: str = "") -> subprocess.CompletedProcess:
    """`apsis ARGS` in a fresh interpreter, after `prelude` (to hide a package, say)."""
    code = f"import sys\n{prelude}\nsys.argv = ['apsis', *sys.argv[1:]]\n" \
           "from apsis_cli.apsis import main\nmain()\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=30, check=False)


def test_without_the_extra_it_says_how_to_install_it() -> None:
    result = run_apsis("tui", "--web", prelude="sys.modules['textual_serve'] = None")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pip install 'apsis[web]'" in result.stderr


def test_a_taken_port_is_one_line_and_port_needs_web() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = run_apsis("tui", "--web", "--port", port)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}")
    assert result.stderr.count("\n") == 1 and "--port" in result.stderr
    alone = run_apsis("tui", "--port", port)
    assert alone.returncode == 2 and "--port is for --web" in alone.stderr

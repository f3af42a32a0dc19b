"""The shared daemon fixture: a real `apsisctl serve` in a subprocess, on a free port.

    def test_something(apsis_daemon):
        daemon = apsis_daemon({"hello": "program: {type: no-op}"})
        httpx.get(daemon.url + "/api/v1/alive")
        daemon.restart()          # SIGKILL, then start again on the same port and database

`apsis_daemon` (one test) and `apsis_daemon_module` (shared by a module's tests) are
factories taking job YAML texts by job id; every daemon they start is stopped at
teardown, with the agent processes it left behind.

Every test that starts a daemon runs twice: on a SQLite file and on a PostgreSQL
database of its own (a copy of `pg_schema_template`, dropped after), by the `backend`
parameter. Not parametrised: a test marked `sqlite_only` (it is about SQLite's file, its
locks or its pragmas) and one that takes `pg_url` (it is about PostgreSQL already, and
passes `database=` itself).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0


class Daemon:
    """One daemon's files and process; `url` is its base URL (no /api/v1)."""

    def __init__(self, root: Path, jobs: Mapping[str, str], *, config: str | None = None,
                 jobs_config: str | None = None, env: Mapping[str, str] | None = None,
                 args: list[str] | None = None, token: str | None = None, unix: bool = False,
                 database: str | None = None) -> None:
        self.root = root
        self.jobs_dir = root / "jobs"
        self.db = root / "apsis.db"
        # A postgresql:// URL (the `pg_url` fixture) instead of the SQLite file `db`.
        self._database = database  # a PostgreSQL URL; else the SQLite file `db`
        self.log_path = root / "daemon.log"
        self.jobs_dir.mkdir(parents=True, exist_ok=True)
        for job_id, text in jobs.items():
            self.write_job(job_id, text)
        if jobs_config is not None:
            (self.jobs_dir / ".apsis-jobs.yaml").write_text(jobs_config)
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = root / "apsis.yaml"
            self.config_path.write_text(config)
        if unix:
            self.bind = f"unix:{root / 's.sock'}"
            self.url = self.bind
            self.port = None
        else:
            self.port = free_port()
            self.bind = f"127.0.0.1:{self.port}"
            self.url = f"http://127.0.0.1:{self.port}"
        self.api = f"{self.url}/api/v1"
        self.verify: Any = True  # what wait_alive's httpx trusts (a CA file for a TLS daemon)
        self.token = token  # used to probe /alive when the daemon has tokens
        self.env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.env.pop("APSIS_URL", None)
        self.env.pop("APSIS_TOKEN", None)
        self.env.pop("PYTEST_CURRENT_TEST", None)  # a huge test id would not fit an exec
        self.extra_args = list(args or [])
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    # -- files --------------------------------------------------------------------------

    def write_job(self, job_id: str, text: str) -> Path:
        path = self.jobs_dir / f"{job_id}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    # -- process ------------------------------------------------------------------------

    @property
    def database(self) -> str:
        """What `--db` gets: the URL given, else the file `db` (a test may move it)."""
        return self._database or str(self.db)

    def command(self) -> list[str]:
        cmd = [sys.executable, "-m", "apsis_cli.apsisctl", "serve", "--jobs", str(self.jobs_dir),
               "--db", self.database, "--bind", self.bind]
        if self.config_path is not None:
            cmd += ["--config", str(self.config_path)]
        return cmd + self.extra_args

    def start(self, timeout: float = START_TIMEOUT) -> Daemon:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.starts += 1
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts}: {' '.join(self.command())}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(self.command(), cwd=self.root, env=self.env,
                                         stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_alive(timeout)
        return self

    def wait_alive(self, timeout: float = START_TIMEOUT) -> None:
        import httpx

        transport = httpx.HTTPTransport(uds=self.bind[5:]) if self.port is None else None
        base = "http://apsis" if self.port is None else self.url
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=base, transport=transport, headers=headers, timeout=2.0,
                          verify=self.verify) as http:
            while True:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"the daemon exited with {self.proc.returncode}:\n"
                                       f"{self.log_text()[-4000:]}")
                try:
                    http.get("/api/v1/alive")  # any answer, even 401, means it is up
                    return
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the daemon did not answer within {timeout}s:\n"
                                       f"{self.log_text()[-4000:]}")
                time.sleep(0.05)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash: nothing is flushed or closed by the daemon."""
        if self.running:
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(STOP_TIMEOUT)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM and wait (SIGKILL if it hangs); returns the exit code."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        return self.proc.returncode

    def wait_exit(self, timeout: float = STOP_TIMEOUT) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def restart(self, kill: bool = True, timeout: float = START_TIMEOUT) -> Daemon:
        """SIGKILL (or SIGTERM with kill=False), then start again on the same port and database."""
        if kill:
            self.kill()
        else:
            self.stop()
        return self.start(timeout)

    def cleanup(self) -> None:
        """Stops the daemon and any agent processes it left (programs still running)."""
        self.stop()
        kill_agents(Path(str(self.db) + ".agent"))

    def client(self, **kwargs: Any) -> Any:
        from apsis.client import Client

        kwargs.setdefault("token", self.token)
        return Client(self.url, **kwargs)


def kill_agents(state_dir: Path) -> None:
    """SIGKILL the process groups of programs and the agent server of one agent dir."""
    from apsis.agent.agent import _group_alive, _pid_alive, recorded_pids

    if not state_dir.exists():
        return
    for pid, start_ticks in recorded_pids(str(state_dir)):
        try:
            # The start time guards against a pid reused by an unrelated process.
            if _pid_alive(pid, start_ticks) or _group_alive(pid):  # or its children, once it exited
                os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        pid = int((state_dir / "server.lock").read_text().strip())
        if str(state_dir).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


DaemonFactory = Callable[..., Daemon]

BACKENDS = ("sqlite", pytest.param("postgresql", marks=pytest.mark.postgres))


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames or "pg_url" in metafunc.fixturenames:
        return
    if metafunc.definition.get_closest_marker("sqlite_only") is not None:
        return
    # Module scope: a module's shared daemon is started once per backend. (Elsewhere,
    # the CLI's and the TUI's tests, `backend` is tests/conftest.py's "sqlite".)
    metafunc.parametrize("backend", BACKENDS, scope="module")


def _factory(make_root: Callable[[], Path], backend: str,
             request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    daemons: list[Daemon] = []
    databases: list[str] = []
    server = request.getfixturevalue("pg_server") if backend == "postgresql" else None

    def start(jobs: Mapping[str, str] | None = None, *, start: bool = True, **kwargs: Any) -> Daemon:
        """A daemon with these jobs ({job_id: YAML text}); see `Daemon` for the options."""
        if server is not None and "database" not in kwargs:
            databases.append(server.create_database(
                template=request.getfixturevalue("pg_schema_template")))
            kwargs["database"] = server.url(databases[-1])
        daemon = Daemon(make_root(), jobs or {}, **kwargs)
        daemons.append(daemon)
        if start:
            daemon.start()
        return daemon

    try:
        yield start
    finally:
        for daemon in daemons:
            daemon.cleanup()
        for name in databases:
            server.drop_database(name)  # type: ignore[union-attr]


@pytest.fixture
def apsis_daemon(tmp_path_factory: pytest.TempPathFactory, backend: str,
                 request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    """Starts daemons for one test: `apsis_daemon({"job": "program: ..."}, config=..., env=...)`."""
    yield from _factory(lambda: tmp_path_factory.mktemp("apsisd"), backend, request)


@pytest.fixture(scope="module")
def apsis_daemon_module(tmp_path_factory: pytest.TempPathFactory, backend: str,
                        request: pytest.FixtureRequest) -> Iterator[DaemonFactory]:
    """The same factory, with daemons shared by every test of a module."""
    yield from _factory(lambda: tmp_path_factory.mktemp("apsisd"), backend, request)


# A module that defines `JOBS` (job id → YAML text) gets these; one daemon per module.

@pytest.fixture(scope="module")
def daemon(apsis_daemon_module: DaemonFactory, request: pytest.FixtureRequest) -> Any:
    """The daemon on the test module's `JOBS`, shared by the module's tests."""
    return apsis_daemon_module(request.module.JOBS)


@pytest.fixture
def api(daemon: Any) -> Iterator[Any]:
    """An httpx client on `daemon`'s `/api/v1`."""
    from .helpers import http

    with http(daemon) as client:
        yield client


@pytest.fixture
def url(daemon: Any) -> str:
    """`daemon`'s base URL, for the CLI's `--url`."""
    return daemon.url

"""A private PostgreSQL server for the tests, and a fresh database per test.

    def test_something(pg_url):     # postgresql://postgres@/apsis_test_3?host=/tmp/...
        store = await open_store(pg_url)

`pg_server` (session-scoped) runs `initdb` into a temp dir and starts `postgres` on a
unix socket there (no TCP port to collide on), with fsync off (a test database need not
survive a power cut). As root, both run as the `postgres` user, since PostgreSQL refuses
to run as root. It is stopped at the end of the session. `pg_url` creates an empty
database for one test and drops it after; `pg_schema_template` is a database with the
schema in place, which `CREATE DATABASE ... TEMPLATE` copies in a few milliseconds
(quicker than migrating an empty one: what the tests that run on both backends use).

Skipped, saying how to fix it, when the PostgreSQL server is not installed
(`apt-get install postgresql`; .ci/run does it).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import glob
import itertools
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPERUSER = "postgres"
_databases = itertools.count(1)


def find_bin_dir() -> Path | None:
    """The newest installed server's bin dir (Debian keeps them out of PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


class PgServer:
    """One PostgreSQL cluster in a temp dir, reached through its unix socket."""

    def __init__(self, bin_dir: Path, *, durable: bool = False) -> None:
        """`durable`: fsync'd commits, as in production (benchmarks compare it with SQLite)."""
        self.bin_dir = bin_dir
        self.durable = durable
        self.root = Path(tempfile.mkdtemp(prefix="apsis-pg-"))
        self.data = self.root / "data"
        self.log_path = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = 0  # server_version_num, once started
        # As root: the server refuses root, so it runs as `postgres` and owns the temp dir.
        # (Popen's `user`, not `runuser`: signals must reach the server itself.)
        self.user: dict[str, object] = {}
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
            self.user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@/{database}?host={self.root}"

    def start(self) -> None:
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data), "-U", SUPERUSER,
             "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=self.root,
            timeout=60, env=_env(), **self.user)  # type: ignore[call-overload]
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o666)
        try:
            self.proc = subprocess.Popen(
                [str(self.bin_dir / "postgres"), "-D", str(self.data),
                 "-k", str(self.root), "-c", "listen_addresses=", "-c", "max_connections=200",
                 *([] if self.durable else ["-c", "fsync=off", "-c", "synchronous_commit=off",
                                            "-c", "full_page_writes=off",
                                            "-c", "shared_buffers=32MB"])],
                stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=self.root, env=_env(), **self.user)  # type: ignore[call-overload]
        finally:
            os.close(log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited: {self.log_path.read_text()}")
            if self.psql("SELECT 1", check=False).returncode == 0:
                self.version = int(self.psql("SHOW server_version_num").stdout)
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not start: {self.log_path.read_text()}")

    def psql(self, sql: str, *, database: str = "postgres", check: bool = True
             ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", str(self.root),
             "-U", SUPERUSER, "-d", database, "-tA", "-c", sql],
            check=check, capture_output=True, text=True, timeout=30, env=_env())

    def create_database(self, template: str | None = None) -> str:
        """A new database, empty or a copy of `template` (which no one may be connected to).
        A copy is made file by file (PostgreSQL 15's default logs every page: twice as slow
        for the integration suite's hundred databases)."""
        name = f"apsis_test_{next(_databases)}"
        sql = f"CREATE DATABASE {name}"
        if template:
            sql += f" TEMPLATE {template}" + (" STRATEGY FILE_COPY" if self.version >= 150000 else "")
        self.psql(sql)
        return name

    def drop_database(self, name: str) -> None:
        self.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)", check=False)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            # SIGINT: "fast" shutdown, ends sessions without waiting for them.
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def _env() -> dict[str, str]:
    """The environment without pytest's PYTEST_CURRENT_TEST, which holds the test's id: a
    test parametrised with a megabyte of text would make it too long to exec."""
    return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    bin_dir = find_bin_dir()
    if bin_dir is None or not (bin_dir / "psql").exists():
        pytest.skip("the PostgreSQL server is not installed (apt-get install postgresql; "
                    ".ci/run does it)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root, and there is no `postgres` user to run the server as")
    server = PgServer(bin_dir)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """The URL of an empty database, dropped after the test."""
    name = pg_server.create_database()
    try:
        yield pg_server.url(name)
    finally:
        pg_server.drop_database(name)


@pytest.fixture(scope="session")
def pg_schema_template(pg_server: PgServer) -> str:
    """A database with the schema in place, to copy for each test (`create_database`);
    nothing may connect to it after this, or the copies would be refused."""
    from apsis.store import open_store

    name = pg_server.create_database()

    async def migrate() -> None:
        store = await open_store(pg_server.url(name))
        await store.close()

    # On a thread of its own: the first test to ask may be an async one, inside a loop.
    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        thread.submit(asyncio.run, migrate()).result()
    return name

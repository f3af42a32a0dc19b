"""A private sshd on 127.0.0.1 for tests of remote runs, and an ssh config that reaches it.

    def test_something(sshd):
        sshd.env            # APSIS_SSH and APSIS_REMOTE_AGENT_DIR for a daemon (in-process
                            # through monkeypatch, or a subprocess's environment)
        sshd.ssh_command    # ["ssh", "-F", <config>]: hosts h1, h2 (this sshd), dead (nothing)

Everything lives in the test's temp dir: host key, client key, authorized_keys,
known_hosts, the ssh config, and the remote agent's state dir. The sshd and any remote
agent it started are stopped at teardown. Skipped when sshd is not installed.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ports import free_port

SSHD_CANDIDATES = ("/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd")
HOST_ALIASES = ("h1", "h2")
DEAD_HOST = "dead"


def find_sshd() -> str | None:
    found = shutil.which("sshd")
    if found:
        return found
    return next((p for p in SSHD_CANDIDATES if os.access(p, os.X_OK)), None)


class SshServer:
    """One sshd on a free loopback port that accepts the test's key for this user."""

    def __init__(self, root: Path, sshd: str) -> None:
        self.root = root
        self.sshd = sshd
        self.port = free_port()
        self.dead_port = free_port()  # nothing listens there
        self.user = getpass.getuser()
        self.remote_agent_dir = root / "remote-agent"
        self.config_path = root / "ssh_config"
        self.log_path = root / "sshd.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def ssh_command(self) -> list[str]:
        return ["ssh", "-F", str(self.config_path)]

    @property
    def env(self) -> dict[str, str]:
        return {"APSIS_SSH": shlex.join(self.ssh_command), "APSIS_REMOTE_AGENT_DIR": str(self.remote_agent_dir)}

    def start(self) -> None:
        root = self.root
        root.mkdir(parents=True, exist_ok=True)
        host_key, client_key = root / "host_key", root / "client_key"
        for key in (host_key, client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (root / "authorized_keys").write_text((root / "client_key.pub").read_text())
        host_pub = " ".join((root / "host_key.pub").read_text().split()[:2])
        (root / "known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        (root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {host_key}\n"
            f"AuthorizedKeysFile {root / 'authorized_keys'}\nPidFile {root / 'sshd.pid'}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nPubkeyAuthentication yes\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nUsePAM no\nUseDNS no\n"
            "LogLevel ERROR\n"
        )
        self.write_ssh_config()
        if os.geteuid() == 0:
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # sshd's privilege separation dir
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [self.sshd, "-D", "-e", "-f", str(root / "sshd_config")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log_path.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 0.2):
                return
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not listen on {self.port}: {self.log_path.read_text()}")

    def write_ssh_config(self, *, reachable: bool = True) -> None:
        """The client's config; `reachable=False` points h1 and h2 at the dead port too
        (ssh reads its config on every connect: a way to cut a host off for a while)."""
        root = self.root
        common = (
            f"  HostName 127.0.0.1\n  User {self.user}\n  IdentityFile {root / 'client_key'}\n"
            "  IdentitiesOnly yes\n  StrictHostKeyChecking yes\n"
            f"  UserKnownHostsFile {root / 'known_hosts'}\n  GlobalKnownHostsFile /dev/null\n"
            "  ControlMaster no\n  LogLevel ERROR\n"
        )
        port = self.port if reachable else self.dead_port
        self.config_path.write_text(
            f"Host {' '.join(HOST_ALIASES)}\n  Port {port}\n{common}"
            f"Host {DEAD_HOST}\n  Port {self.dead_port}\n{common}"
        )

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        stop_agent(self.remote_agent_dir)


def stop_agent(state_dir: Path) -> None:
    """The agent outlives its clients by design: end the one a test left in `state_dir`."""
    lock = state_dir / "server.lock"
    with contextlib.suppress(OSError, ValueError, IndexError):
        os.kill(int(lock.read_text().split()[0]), signal.SIGTERM)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    path = find_sshd()
    if path is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        pytest.skip("OpenSSH server and client are not installed (apt-get install openssh-server openssh-client)")
    server = SshServer(tmp_path / "sshd", path)
    try:
        server.start()
        yield server
    finally:
        server.stop()

"""`api.tls` end to end: the daemon serves HTTPS and wss, the CLI trusts it through
APSIS_CA, and an untrusted certificate is a clear, immediate error."""

from __future__ import annotations

import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Daemon

JOBS = {"hello": "program: [sh, -c, 'echo hello over tls']\n"}


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made by the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    root = tmp_path_factory.mktemp("tls")
    cert, key = root / "cert.pem", root / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="module")
def tls_daemon(certificate: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    cert, key = certificate
    daemon = Daemon(tmp_path_factory.mktemp("apsisd"), JOBS,
                    config=f"api:\n  tls: {{cert: {cert}, key: {key}}}\n")
    daemon.url = daemon.url.replace("http://", "https://")
    daemon.api = f"{daemon.url}/api/v1"
    daemon.verify = ssl.create_default_context(cafile=str(cert))
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.cleanup()


def apsis(daemon: Daemon, *args: str, ca: Path | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APSIS_URL": daemon.url, "NO_COLOR": "1"}
    env.pop("APSIS_CA", None)
    if ca is not None:
        env["APSIS_CA"] = str(ca)
    return subprocess.run([sys.executable, "-m", "apsis_cli.apsis", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_runs_a_job_over_https_and_wss(tls_daemon: Daemon, certificate) -> None:
    cert, _key = certificate
    # --wait follows the event stream (wss), --output the output stream.
    done = apsis(tls_daemon, "run", "hello", "--wait", "--output", ca=cert)
    assert done.returncode == 0, done.stderr
    assert "hello over tls" in done.stdout


def test_an_untrusted_certificate_fails_at_once_with_a_hint(tls_daemon: Daemon) -> None:
    # Retrying cannot fix a certificate: with --retry-for 5m, a retry would hit the
    # subprocess's 60 s timeout.
    done = apsis(tls_daemon, "--retry-for", "5m", "runs", ca=None)
    assert done.returncode == 69
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "certificate" in lines[0] and "APSIS_CA" in lines[0]


def test_plain_http_to_a_tls_daemon_is_refused(tls_daemon: Daemon) -> None:
    import httpx

    with pytest.raises(httpx.TransportError):
        httpx.get(tls_daemon.api.replace("https://", "http://") + "/alive", timeout=5)

"""Where the CLI looks for daemons: a comma-separated --url list (SPEC §1.14), the URL
`make run` leaves when it moves off port 5000 (issue 13), and `apsisctl status` on the
embedded SQLite database."""

from __future__ import annotations

import json
import socket
import time

import pytest

from apsis.client import ApsisError, ApsisUnavailable, Client, parse_urls
from apsis_cli.devrun import publish_url, unpublish_url

from tests.ports import free_port

from .helpers import apsis, apsisctl, env_for
from .test_first_hour import not_apsis  # noqa: F401 - the fixture

JOBS = {"ops/ok": "program: 'true'\n"}


def test_a_url_list_is_parsed_in_order_once_each():
    endpoints = parse_urls(" http://a:5000/ ,https://b:5001,, a:5000, unix:/run/apsis.sock")
    assert [e.url for e in endpoints] == ["http://a:5000", "https://b:5001", "unix:/run/apsis.sock"]
    assert [e.ws_base for e in endpoints] == ["ws://a:5000", "wss://b:5001", "ws://apsis"]
    assert endpoints[2].uds == "/run/apsis.sock"
    assert Client("http://a:5000,http://b:5000").urls == ["http://a:5000", "http://b:5000"]
    for bad in ("", " , ", "http://a:5000,ftp://b", "unix:"):
        with pytest.raises(ApsisError) as info:
            parse_urls(bad)
        assert info.value.code == "bad_url"


def _silent_port() -> tuple[socket.socket, int]:
    """A listening socket that never accepts, its backlog full: connecting times out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    for _ in range(8):  # fill the backlog, so the next connect hangs in SYN_SENT
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    return sock, port


async def test_no_daemon_answered_names_each_and_why():
    refused = free_port()  # nothing listens there
    client = Client(f"http://127.0.0.1:{refused},http://127.0.0.1:{refused + 0}", retry_for=0.0)
    assert len(client.urls) == 1  # the same daemon twice is one
    listening, silent = _silent_port()
    try:
        client = Client(f"http://127.0.0.1:{refused},http://127.0.0.1:{silent}",
                        timeout=0.5, retry_for=0.0)
        with pytest.raises(ApsisUnavailable) as info:
            await client.alive()
        await client.close()
    finally:
        listening.close()
    assert info.value.message == (f"no daemon answered: http://127.0.0.1:{refused} (refused), "
                                  f"http://127.0.0.1:{silent} (timeout)")


async def test_a_stream_gives_up_when_retry_for_is_up_not_after_its_next_backoff():
    """`apsis wait --retry-for 4s` on a daemon gone for good: the back-off (0.1 s doubling)
    would sleep past 4 s, to ~6 s; the last pause is cut to the time left."""
    refused = free_port()  # nothing listens there
    client = Client(f"http://127.0.0.1:{refused}", retry_for=4.0)
    start = time.monotonic()
    with pytest.raises(ApsisUnavailable) as info:
        async for _ in client.events(0):
            pass
    await client.close()
    assert 3.9 <= time.monotonic() - start < 5.0
    assert "(retried for 4s)" in info.value.message


def test_the_cli_uses_whichever_daemon_answers(daemon, not_apsis):  # noqa: F811
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    # A dead daemon, then a web server that is not Apsis, then the daemon.
    urls = f"{dead},{not_apsis},{daemon.url}"
    created = apsis(urls, "run", "ops/ok", "--wait")
    assert created.returncode == 0, created.stderr
    listed = apsis(urls, "runs", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout), listed.stderr
    # Piped stderr: no note about moving between daemons.
    assert "stopped answering" not in created.stderr + listed.stderr
    gone = apsis(f"{dead},{not_apsis}", "--retry-for", "0s", "runs")
    assert gone.returncode == 69
    assert gone.stderr.startswith(f"error: no daemon answered: {dead} (refused), {not_apsis} "
                                  "(not Apsis: HTTP 404"), gone.stderr
    bad = apsis("http://a:5000,ftp://b", "runs")
    assert bad.returncode == 2 and "bad Apsis URL 'ftp://b'" in bad.stderr


def test_the_cli_finds_the_daemon_make_run_moved(daemon, tmp_path, monkeypatch,
                                                 not_apsis):  # noqa: F811
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    env = env_for(None, XDG_RUNTIME_DIR=str(tmp_path), APSIS_RETRY_FOR="0s")
    path = publish_url(daemon.url)  # as `make run` does
    assert path == tmp_path / "apsis" / "url" and path.read_text() == daemon.url + "\n"
    found = apsis(None, "runs", "--json", env=env)
    assert found.returncode == 0, found.stderr
    # Another server on that port now (the daemon gone, the file left): the default.
    publish_url(not_apsis)
    fallback = apsis(None, "runs", env=env)
    assert fallback.returncode == 69 and "127.0.0.1:5000" in fallback.stderr, fallback.stderr
    # Quitting removes the file, unless another `make run` wrote its own since.
    unpublish_url(path, daemon.url)
    assert path.exists()
    unpublish_url(path, not_apsis)
    assert not path.exists()


def test_status_on_sqlite_is_one_daemon(daemon):
    result = apsisctl(daemon.url, "status", "--db", str(daemon.db))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "SQLite: a single daemon" in lines[0]
    assert f"pid {daemon.pid} holds the database" in lines[1]
    assert lines[2].startswith(daemon.url) and "single daemon, epoch 0" in lines[2]
    doc = json.loads(apsisctl(daemon.url, "status", "--db", str(daemon.db), "--json").stdout)
    assert (doc["backend"], doc["epoch"], doc["leader"]) == ("sqlite", 0, f"pid {daemon.pid}")
    assert [(d["url"], d["role"]) for d in doc["daemons"]] == [(daemon.url, "leader")]


def test_status_without_a_daemon_exits_1(tmp_path):
    db = tmp_path / "apsis.db"
    assert apsisctl(None, "db", "migrate", "--db", str(db)).returncode == 0
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    result = apsisctl(dead, "status", "--db", str(db))
    assert result.returncode == 1, result
    assert "none holds the database" in result.stdout
    assert f"{dead}  no answer: refused" in result.stdout
    assert time.monotonic() - started < 20

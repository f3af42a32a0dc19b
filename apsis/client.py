"""The async client of the Apsis API, shared by the CLI and the TUI.

    async with Client() as client:          # APSIS_URL, APSIS_TOKEN
        page = await client.runs(job_id="data/load prices", states=["failure"])
        async for event in client.events():  # reconnects and resumes by itself
            ...

httpx, websockets and asyncio are imported when first needed, not at import time,
so that `apsis --help` stays fast; `get_now` answers a one-shot command's single GET
with a plain socket, without an event loop, httpx or TLS set-up.  Connection failures are retried for `retry_for` seconds
and then raised as `ApsisUnavailable` naming the URL; refusals are `ApsisError`
with the server's status, code and message.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar
from urllib.parse import quote, urlencode, urlsplit

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:5000"
API = "/api/v1"
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
CLOSE_DONE = 1000

T = TypeVar("T")

# What `Client.events(on_state=...)` reports about its websocket.
StreamState = Literal["connecting", "live", "disconnected"]


class ApsisError(Exception):
    """The daemon refused a request (status and code from its error body), or could not be used."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


class ApsisUnavailable(ApsisError):
    """The daemon could not be reached (after retrying for `retry_for` seconds)."""


class ApsisNotFound(ApsisError):
    """No such run, job or output (404)."""


def _import_httpx() -> Any:
    # httpx imports its command-line tool (click, rich, pygments) unless told it is
    # absent; the client never needs it.
    if "httpx" not in sys.modules:
        sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    import httpx

    return httpx


def _untrusted_certificate(exc: BaseException) -> str | None:
    """The reason, if `exc` comes from a TLS certificate that failed verification."""
    import ssl

    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore, which wraps the ssl error
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _time_text(value: str | dt.datetime | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.isoformat()


class Client:
    """One connection's worth of state: an httpx client, the URL and the token."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retry_for: float | None = 30.0) -> None:
        self.url = (url or os.environ.get("APSIS_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else (os.environ.get("APSIS_TOKEN") or None)
        self.timeout = timeout
        self.retry_for = retry_for
        self._uds: str | None = None
        if self.url.startswith("unix:"):
            self._uds = self.url[len("unix:"):]
        elif self.url.startswith("http+unix://"):
            self._uds = self.url[len("http+unix://"):]
        if self._uds is not None:
            self._http_base, self._ws_base = "http://apsis", "ws://apsis"
        else:
            parts = urlsplit(self.url if "://" in self.url else "http://" + self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ApsisError(f"bad Apsis URL {self.url!r}: use http://HOST:PORT, "
                                 "https://HOST:PORT or unix:/path/to/socket")
            self._http_base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
            ws_scheme = "wss" if parts.scheme == "https" else "ws"
            self._ws_base = f"{ws_scheme}://{parts.netloc}{parts.path.rstrip('/')}"
        self._http: httpx.AsyncClient | None = None

    # -- plumbing -----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _ssl_context(self) -> Any:
        import ssl

        return ssl.create_default_context(cafile=os.environ.get("APSIS_CA") or None)

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            httpx = _import_httpx()
            # Plain http or a unix socket never does TLS: verify=False spares loading the
            # CA bundle (~50 ms of every CLI command's start).  redirects are not followed,
            # so no request can move to https unverified.
            kwargs: dict[str, Any] = {"verify": False}
            if self._uds is not None:
                kwargs["transport"] = httpx.AsyncHTTPTransport(uds=self._uds, verify=False)
            elif self._http_base.startswith("https:"):
                kwargs["verify"] = self._ssl_context()
            self._http = httpx.AsyncClient(base_url=self._http_base, headers=self._headers(),
                                           timeout=httpx.Timeout(self.timeout), **kwargs)
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _unavailable(self, exc: BaseException, tried: float | None = None) -> ApsisUnavailable:
        why = str(exc) or type(exc).__name__
        during = f" (retried for {tried:.0f}s)" if tried and tried >= 1 else ""
        return ApsisUnavailable(f"cannot reach Apsis at {self.url}{during}: {why}")

    async def _request(self, method: str, path: str, *, params: Any = None,
                       body: Any = None) -> Any:
        """One API call; retries what cannot have reached the daemon, and GETs that broke."""
        httpx = _import_httpx()
        http = self._client()
        started = time.monotonic()
        delay = BACKOFF_MIN
        while True:
            try:
                response = await http.request(method, API + path, params=params, json=body)
            except httpx.TransportError as exc:
                untrusted = _untrusted_certificate(exc)
                if untrusted is not None:  # retrying cannot fix it
                    raise ApsisUnavailable(
                        f"the daemon at {self.url} has a certificate this client does not "
                        f"trust ({untrusted})", code="tls") from None
                connect_failed = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                if not connect_failed and method != "GET":
                    # It may have been applied: do not send it twice.
                    raise ApsisUnavailable(f"lost the connection to Apsis at {self.url} during "
                                           f"{method} {path}: {exc or type(exc).__name__}") from None
                await _sleep(self._retry_pause(exc, started, delay))
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            return self._check(response)

    def _retry_pause(self, exc: BaseException, started: float, delay: float) -> float:
        """How long to wait before the next try; ApsisUnavailable once `retry_for` is up."""
        waited = time.monotonic() - started
        if self.retry_for is not None and waited >= self.retry_for:
            raise self._unavailable(exc, waited) from None
        pause = _jitter(delay)
        if self.retry_for is not None:
            pause = min(pause, max(self.retry_for - waited, 0.0))
        return pause

    def _check(self, response: httpx.Response) -> httpx.Response:
        # A 307 is a standby's answer to a write: refused, saying where the leader is.
        if response.status_code < 300:
            return response
        raise _refusal(response.status_code, response.content, response.reason_phrase)

    def get_now(self, path: str, params: Any = None) -> Any:
        """One GET, its JSON answer, without an event loop: for a command that makes one
        request. Over http:// or a unix socket it is a plain socket (no httpx, no TLS
        set-up: tens of milliseconds of a command's start); https goes through httpx.
        Retries and errors as for the async calls."""
        if self._http_base.startswith("https:"):
            import asyncio

            async def once() -> Any:
                try:
                    return await self._get(path, params)
                finally:
                    await self.close()

            return asyncio.run(once())
        if self.token is not None and any(c in self.token for c in "\r\n"):
            raise ApsisError("the API token contains a line break: check APSIS_TOKEN or --token")
        target = API + path + (f"?{urlencode(params)}" if params else "")
        started = time.monotonic()
        delay = BACKOFF_MIN
        while True:
            try:
                status, reason, body = self._plain_get(target)
            except OSError as exc:
                time.sleep(self._retry_pause(exc, started, delay))
                delay = min(delay * 2, BACKOFF_MAX)
                continue
            if status >= 400:
                raise _refusal(status, body, reason)
            return json.loads(body)

    def _plain_get(self, target: str) -> tuple[int, str, bytes]:
        """(status, reason, body) of one HTTP/1.1 GET on a connection of its own."""
        import socket

        parts = urlsplit(self._http_base)
        if self._uds is not None:
            sock = socket.socket(socket.AF_UNIX)
            sock.settimeout(self.timeout)
            try:
                sock.connect(self._uds)
            except OSError:
                sock.close()
                raise
        else:
            sock = socket.create_connection((parts.hostname, parts.port or 80), self.timeout)
        headers = "".join(f"{k}: {v}\r\n" for k, v in self._headers().items())
        with sock:
            sock.sendall(f"GET {parts.path}{target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         f"Accept: application/json\r\nConnection: close\r\n{headers}\r\n"
                         .encode())
            data = bytearray()
            while chunk := sock.recv(1 << 16):
                data += chunk
        head, found, body = bytes(data).partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not found or not version.startswith("HTTP/") or not code.isdigit():
            raise ConnectionError(f"no HTTP answer from {self.url} (is it an Apsis daemon?)")
        fields = {name.strip().lower(): value.strip()
                  for name, _, value in (line.partition(":") for line in lines)}
        if "chunked" in fields.get("transfer-encoding", "").lower():
            body = _dechunk(body)
        elif fields.get("content-length", "").isdigit():
            length = int(fields["content-length"])
            if len(body) < length:
                raise ConnectionError(f"the answer from {self.url} was cut short")
            body = body[:length]
        return int(code), reason, body

    async def _get(self, path: str, params: Any = None) -> Any:
        return (await self._request("GET", path, params=params)).json()

    async def _post(self, path: str, body: Any = None, params: Any = None) -> Any:
        return (await self._request("POST", path, params=params, body=body)).json()

    # -- reading ------------------------------------------------------------------------

    async def alive(self) -> dict[str, Any]:
        """`{status, version, started_at, seq}`."""
        return await self._get("/alive")

    async def jobs(self, label: str | None = None) -> list[dict[str, Any]]:
        return (await self._get("/jobs", {"label": label} if label else None))["jobs"]

    async def job(self, job_id: str) -> dict[str, Any]:
        return await self._get(f"/jobs/{_q(job_id)}")

    async def job_schedule(self, job_id: str, start: str | dt.datetime | None = None,
                           stop: str | dt.datetime | None = None,
                           limit: int | None = None) -> list[dict[str, Any]]:
        """Runs the job's schedules would create in [start, stop): `{job_id, args, time, ...}`."""
        params = {k: v for k, v in (("from", _time_text(start)), ("to", _time_text(stop)),
                                    ("limit", limit)) if v is not None}
        return (await self._get(f"/jobs/{_q(job_id)}/schedule", params))["runs"]

    async def runs(self, *, job_id: str | None = None, states: Iterable[str] | None = None,
                   since: str | dt.datetime | None = None, until: str | dt.datetime | None = None,
                   labels: Iterable[str] | None = None, args: Mapping[str, str] | None = None,
                   limit: int = 100, cursor: str | None = None,
                   summary: bool = False) -> dict[str, Any]:
        """One page, newest first: `{runs, seq, cursor}` (cursor None on the last page).
        `summary`: each run as its summary (what a table shows), a fraction of the bytes."""
        return await self._get("/runs", runs_params(
            job_id=job_id, states=states, since=since, until=until, labels=labels, args=args,
            limit=limit, cursor=cursor, summary=summary))

    async def iter_runs(self, *, page_size: int = 1000, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, page after page (filters as for `runs`)."""
        filters.pop("limit", None)
        cursor = filters.pop("cursor", None)
        while True:
            page = await self.runs(limit=page_size, cursor=cursor, **filters)
            for run in page["runs"]:
                yield run
            cursor = page["cursor"]
            if cursor is None:
                return

    async def run(self, run_id: str) -> dict[str, Any]:
        return await self._get(f"/runs/{_q(run_id)}")

    async def run_log(self, run_id: str) -> list[dict[str, Any]]:
        return (await self._get(f"/runs/{_q(run_id)}/log"))["log"]

    async def outputs(self, run_id: str) -> list[dict[str, Any]]:
        return (await self._get(f"/runs/{_q(run_id)}/outputs"))["outputs"]

    async def output_bytes(self, run_id: str, output_id: str = "output", start: int = 0,
                           end: int | None = None) -> bytes:
        params = {"start": start, **({"end": end} if end is not None else {})}
        response = await self._request("GET", f"/runs/{_q(run_id)}/output/{_q(output_id)}",
                                       params=params)
        return response.content

    async def stats(self) -> dict[str, Any]:
        return await self._get("/control/stats")

    # -- changing -----------------------------------------------------------------------

    async def create_runs(self, job_id: str, args: Mapping[str, str] | None = None, *,
                          schedule: str | dt.datetime | None = None,
                          stop: str | dt.datetime | None = None, count: int = 1) -> list[dict[str, Any]]:
        """New runs of a job, now or at `schedule` (ISO time, `now`, `+DURATION`)."""
        body = {"job_id": job_id, "args": dict(args or {}),
                "times": _times(schedule, stop), "count": count}
        return (await self._post("/runs", body))["runs"]

    async def create_adhoc(self, job: Mapping[str, Any], *, args: Mapping[str, str] | None = None,
                           schedule: str | dt.datetime | None = None,
                           stop: str | dt.datetime | None = None, count: int = 1) -> list[dict[str, Any]]:
        """Runs of an inline job (admin role); the job is labelled `ad-hoc`."""
        body = {"job": dict(job), "args": dict(args or {}),
                "times": _times(schedule, stop), "count": count}
        return (await self._post("/runs", body))["runs"]

    async def skip(self, run_id: str) -> dict[str, Any]:
        return await self._post(f"/runs/{_q(run_id)}/skip")

    async def start(self, run_id: str) -> dict[str, Any]:
        return await self._post(f"/runs/{_q(run_id)}/start")

    async def stop(self, run_id: str) -> dict[str, Any]:
        return await self._post(f"/runs/{_q(run_id)}/stop")

    async def rerun(self, run_id: str) -> dict[str, Any]:
        """The new run."""
        return await self._post(f"/runs/{_q(run_id)}/rerun")

    async def signal(self, run_id: str, sig: str | int) -> dict[str, Any]:
        return await self._post(f"/runs/{_q(run_id)}/signal/{_q(str(sig))}")

    async def mark(self, run_id: str, state: str) -> dict[str, Any]:
        return await self._post(f"/runs/{_q(run_id)}/mark/{_q(state)}")

    async def reload(self, dry_run: bool = False) -> dict[str, Any]:
        return await self._post("/control/reload", params={"dry_run": "true" if dry_run else "false"})

    async def archive(self, older_than: str) -> dict[str, Any]:
        """Has the daemon move finished runs older than `older_than` (`90d`) to its archive."""
        return await self._post("/control/archive", params={"older_than": older_than})

    async def shutdown(self, restart: bool = False) -> dict[str, Any]:
        return await self._post("/control/shutdown", params={"restart": "true" if restart else "false"})

    # -- streams ------------------------------------------------------------------------

    def _ws_connect(self, path: str, params: list[tuple[str, Any]]) -> Any:
        from websockets.asyncio.client import connect, unix_connect

        query = urlencode([(k, v) for k, v in params if v is not None])
        uri = f"{self._ws_base}{API}{path}" + (f"?{query}" if query else "")
        kwargs: dict[str, Any] = {"additional_headers": self._headers(), "open_timeout": self.timeout,
                                  "close_timeout": 2, "max_size": 2**24}
        if self._uds is not None:
            return unix_connect(self._uds, uri, **kwargs)
        if uri.startswith("wss:"):
            kwargs["ssl"] = self._ssl_context()
        return connect(uri, **kwargs)

    def _refused(self, exc: Any) -> ApsisError | None:
        """The error for a refused handshake that retrying cannot fix, else None."""
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None)
        if response is None or status is None or status >= 500:
            return None
        code, message = None, f"websocket refused with HTTP {status}"
        try:
            error = json.loads(response.body)["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            pass
        return (ApsisNotFound if status == 404 else ApsisError)(message, status, code)

    async def _reconnecting(self, path: str, params: Callable[[], list[tuple[str, Any]]],
                            decode: Callable[[str | bytes], Iterable[T]], *,
                            prepare: Callable[[], Awaitable[None]] | None = None,
                            min_lifetime: float = 1.0, until_done: bool = False,
                            on_state: Callable[[StreamState], None] | None = None,
                            ) -> AsyncIterator[T]:
        """A websocket stream across reconnections: the items ``decode`` makes of each
        message (none, one or many), forever, or with ``until_done`` until the daemon closes with
        CLOSE_DONE. ``params`` is asked before each connection, so the caller resumes
        where it is (its last seq, its offset); ``prepare`` runs once, first.

        A connection that lives less than `min_lifetime` seconds does not reset the
        backoff, so a daemon that accepts and hangs up cannot cause a storm. A refused
        handshake that retrying cannot fix is raised at once; no connection for
        `retry_for` seconds raises ApsisUnavailable. ``on_state`` hears "connecting",
        then "live" and "disconnected" as they change.

        One generator, not one wrapped in another: closing the caller's iterator closes
        the socket at once, as a nested generator left to the loop's finalizer would not.
        """
        from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

        shown: list[StreamState] = []

        def report(state: StreamState) -> None:
            if on_state is not None and shown[-1:] != [state]:
                shown[:] = [state]
                on_state(state)

        report("connecting")
        if prepare is not None:
            try:
                await prepare()
            except ApsisError:
                report("disconnected")
                raise
        backoff = BACKOFF_MIN
        down_since: float | None = None
        while True:
            connected_at: float | None = None
            error: BaseException | None = None
            try:
                async with self._ws_connect(path, params()) as ws:
                    connected_at = time.monotonic()
                    down_since = None
                    report("live")
                    async for message in ws:
                        for item in decode(message):
                            yield item
                    if until_done and ws.close_code == CLOSE_DONE:
                        return
            except InvalidStatus as exc:
                report("disconnected")
                refused = self._refused(exc)
                if refused is not None:
                    raise refused from None
                error = exc
            except (TimeoutError, OSError, InvalidHandshake, ConnectionClosed) as exc:
                error = exc
            report("disconnected")
            backoff, down_since = await self._pause(backoff, connected_at, down_since,
                                                    min_lifetime, error)

    async def _pause(self, backoff: float, connected_at: float | None, down_since: float | None,
                     min_lifetime: float, error: BaseException | None) -> tuple[float, float | None]:
        """Sleeps before a reconnection; returns the next backoff and the outage start."""
        now = time.monotonic()
        if connected_at is not None and now - connected_at >= min_lifetime:
            backoff = BACKOFF_MIN  # it was a real connection: try again soon
        elif connected_at is None:
            down_since = down_since if down_since is not None else now
            if self.retry_for is not None and now - down_since >= self.retry_for:
                raise self._unavailable(error or ConnectionError("connection failed"),
                                        now - down_since)
        await _sleep(_jitter(backoff))
        if connected_at is None or now - connected_at < min_lifetime:
            backoff = min(backoff * 2, BACKOFF_MAX)
        return backoff, down_since

    def events(self, since: int | None = None, *, run_id: str | None = None,
               job_id: str | None = None, types: Iterable[str] | None = None,
               min_lifetime: float = 1.0,
               on_state: Callable[[StreamState], None] | None = None,
               ) -> AsyncIterator[dict[str, Any]]:
        """Events after `since` (omitted: from now), forever, across reconnections.

        Resumes from the last seq it yielded, so nothing is lost or repeated; yields
        `{"type": "reset"}` when the daemon no longer has the events asked for (reload
        your state). A connection that lives less than `min_lifetime` seconds does not
        reset the backoff, so a daemon that accepts and hangs up cannot cause a storm.
        Raises ApsisUnavailable only after `retry_for` seconds without a connection.

        `on_state` hears how the websocket is, when that changes: "connecting" before
        the first attempt, "live" once it is open, "disconnected" when it closes or an
        attempt fails (retries stay "disconnected" until one succeeds). A display can
        trust it: while it says "live", events are arriving as they happen.
        """
        last = since if since is not None else -1
        wanted = list(types or [])

        async def prepare() -> None:
            nonlocal last
            if since is None:
                last = (await self.alive())["seq"]

        def params() -> list[tuple[str, Any]]:
            return [("since", last), ("batch", 1), ("run_id", run_id), ("job_id", job_id),
                    *(("type", t) for t in wanted)]

        def decode(message: str | bytes) -> list[dict[str, Any]]:
            # Batched frames: a JSON array of events (an object from an older daemon).
            nonlocal last
            found = json.loads(message)
            fresh = []
            for event in found if isinstance(found, list) else (found,):
                seq = event.get("seq")
                if event.get("type") == "reset":
                    if isinstance(seq, int):
                        last = seq
                elif isinstance(seq, int):
                    if seq <= last:
                        continue
                    last = seq
                fresh.append(event)
            return fresh

        return self._reconnecting("/events", params, decode, prepare=prepare,
                                  min_lifetime=min_lifetime, on_state=on_state)

    def output(self, run_id: str, output_id: str = "output", *, start: int = 0,
               follow: bool = True) -> AsyncIterator[bytes]:
        """The output's bytes from `start`; with `follow`, live until the run is finished
        and every byte is sent, resuming from its offset after a dropped connection."""
        if not follow:
            return self._output_once(run_id, output_id, start)
        offset = start

        def decode(message: str | bytes) -> tuple[bytes]:
            nonlocal offset
            data = message.encode() if isinstance(message, str) else bytes(message)
            offset += len(data)
            return (data,)

        return self._reconnecting(f"/runs/{_q(run_id)}/output/{_q(output_id)}",
                                  lambda: [("start", offset)], decode, until_done=True)

    async def _output_once(self, run_id: str, output_id: str, start: int) -> AsyncIterator[bytes]:
        data = await self.output_bytes(run_id, output_id, start)
        if data:
            yield data


def runs_params(*, job_id: str | None = None, states: Iterable[str] | None = None,
                since: str | dt.datetime | None = None, until: str | dt.datetime | None = None,
                labels: Iterable[str] | None = None, args: Mapping[str, str] | None = None,
                limit: int = 100, cursor: str | None = None,
                summary: bool = False) -> list[tuple[str, Any]]:
    """The query of `GET /runs` (what `Client.runs` sends; `get_now` takes it too)."""
    params: list[tuple[str, Any]] = []
    if job_id is not None:
        params.append(("job_id", job_id))
    params += [("state", s) for s in states or ()]
    if since is not None:
        params.append(("since", _time_text(since)))
    if until is not None:
        params.append(("until", _time_text(until)))
    params += [("label", label) for label in labels or ()]
    params += [(f"arg.{name}", value) for name, value in (args or {}).items()]
    params.append(("limit", limit))
    if cursor is not None:
        params.append(("cursor", cursor))
    if summary:
        params.append(("summary", "true"))
    return params


def _q(part: str) -> str:
    return quote(part, safe="/")


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


def _jitter(delay: float) -> float:
    """A pause between half `delay` and `delay`, so clients that lost the same daemon
    do not all come back at once."""
    import random

    return delay * random.uniform(0.5, 1.0)


def _refusal(status: int, body: bytes, reason: str) -> ApsisError:
    """The error for a refused request, with the code and message of its error body."""
    try:
        error = json.loads(body)["error"]
        code, message = error["code"], error["message"]
    except (ValueError, KeyError, TypeError):
        # Not an Apsis error body (an HTML 404 page, a proxy's 502): one line, not the page.
        return ApsisError(f"HTTP {status} {reason}".strip(), status, "not_apsis")
    return (ApsisNotFound if status == 404 else ApsisError)(message, status, code)


def _dechunk(body: bytes) -> bytes:
    """The payload of a chunked transfer encoding."""
    out = bytearray()
    while True:
        size_line, found, body = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0] or b"0", 16) if found else 0
        except ValueError:
            raise ConnectionError("a malformed chunked answer") from None
        if size == 0:
            return bytes(out)
        out += body[:size]
        body = body[size + 2:]


def _times(schedule: str | dt.datetime | None,
           stop: str | dt.datetime | None) -> dict[str, str | None]:
    return {k: _time_text(v) for k, v in (("schedule", schedule), ("stop", stop)) if v is not None}

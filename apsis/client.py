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

Several daemons (SPEC §1.14): the URL may be a comma-separated list
(`http://a:5000,http://b:5000`). Every request and stream goes to the daemon that
last answered; when it does not answer, the next one in the list is tried at once,
and only a whole round of failures waits before the next round. A write a standby
refuses is sent on to the leader (its 307) or, on a 503, to the other daemons. Streams
resume on the next daemon from their last seq or offset: the daemons share one
database, so nothing is lost or repeated. `on_switch` hears each change of daemon.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Self, TypeVar
from urllib.parse import quote, urlencode, urlsplit

if TYPE_CHECKING:
    import httpx

DEFAULT_URL = "http://127.0.0.1:5000"
API = "/api/v1"
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
CLOSE_DONE = 1000
CONNECT_TIMEOUT = 5.0  # with several daemons, the longest a silent host is waited for
MAX_HOPS = 3  # 307s followed in one round of tries
DISCOVERY_TIMEOUT = 0.5  # the /alive that tells whether `make run`'s daemon is still there

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
    """The daemon could not be reached (after retrying for `retry_for` seconds);
    `failures` says why for each daemon tried: (URL, a few words)."""

    def __init__(self, message: str, status: int | None = None, code: str | None = None,
                 failures: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message, status, code)
        self.failures = failures or []


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


class Endpoint(NamedTuple):
    """One daemon of the list: the URL as given, and how to reach it."""

    url: str
    http_base: str  # what httpx's base_url is (http://apsis over a unix socket)
    ws_base: str
    uds: str | None  # the socket's path, for a unix: URL


def parse_endpoint(url: str) -> Endpoint:
    """One daemon's URL: http(s)://HOST:PORT[/prefix], HOST:PORT, or unix:/path."""
    url = url.strip().rstrip("/")
    for prefix in ("http+unix://", "unix:"):
        if url.startswith(prefix):
            path = url[len(prefix):]
            if not path:
                break
            return Endpoint(url, "http://apsis", "ws://apsis", path)
    parts = urlsplit(url if "://" in url else "http://" + url)
    if parts.scheme not in ("http", "https") or not parts.netloc or url.startswith(
            ("unix:", "http+unix:")):
        raise ApsisError(f"bad Apsis URL {url!r}: use http://HOST:PORT, "
                         "https://HOST:PORT or unix:/path/to/socket", code="bad_url")
    base = f"{parts.netloc}{parts.path.rstrip('/')}"
    ws_scheme = "wss" if parts.scheme == "https" else "ws"
    return Endpoint(url, f"{parts.scheme}://{base}", f"{ws_scheme}://{base}", None)


def parse_urls(text: str) -> list[Endpoint]:
    """The daemons of a comma-separated list (`APSIS_URL=http://a:5000,http://b:5000`),
    in order, each once; blanks between commas are ignored."""
    endpoints: list[Endpoint] = []
    for part in text.split(","):
        if part.strip():
            endpoint = parse_endpoint(part)
            if all(e.http_base != endpoint.http_base or e.uds != endpoint.uds for e in endpoints):
                endpoints.append(endpoint)
    if not endpoints:
        raise ApsisError(f"no Apsis URL in {text!r}: give http://HOST:PORT, or several "
                         "separated by commas", code="bad_url")
    return endpoints


class Daemons:
    """The daemons a client may use and which one it is on: shared by the clients of one
    program (the TUI's three), so that they all move to the daemon that answers."""

    def __init__(self, endpoints: list[Endpoint],
                 on_switch: Callable[[str, str], None] | None = None) -> None:
        self.endpoints = endpoints
        self.on_switch = on_switch  # (from URL, to URL) when another daemon answers
        self._current = 0
        self._answered: str | None = None  # the URL that answered last

    def __len__(self) -> int:
        return len(self.endpoints)

    @property
    def current(self) -> Endpoint:
        return self.endpoints[self._current]

    def in_turn(self) -> list[Endpoint]:
        """Every daemon once, the current one first: one round of tries."""
        return self.endpoints[self._current:] + self.endpoints[:self._current]

    def answered(self, endpoint: Endpoint) -> None:
        """`endpoint` answered: it is the one to use, until it fails."""
        if endpoint not in self.endpoints:
            self.endpoints.append(endpoint)
        self._current = self.endpoints.index(endpoint)
        before, self._answered = self._answered, endpoint.url
        if before is not None and before != endpoint.url and self.on_switch is not None:
            self.on_switch(before, endpoint.url)

    def failed(self, endpoint: Endpoint) -> None:
        """`endpoint` did not answer: the next one in the list is tried first."""
        if endpoint in self.endpoints and endpoint == self.current:
            self._current = (self._current + 1) % len(self.endpoints)

    def redirected(self, location: str, origin: Endpoint) -> Endpoint | None:
        """The daemon a 307's Location names (one of the list, or a new one), or None if
        following it would be unsafe (to plain http from https) or it is not a URL."""
        parts = urlsplit(location)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return None
        if origin.http_base.startswith("https:") and parts.scheme != "https":
            return None  # the token must not travel in clear text
        cut = location.find(API + "/")
        if cut < 0:
            return None  # not a path of the API: not a daemon's redirect
        base = location[:cut]
        target = parse_endpoint(base)
        for known in self.endpoints:
            if known.http_base == target.http_base and known.uds is None:
                return known
        return target


class _Round:
    """The failures of one round of tries through the daemons, and whether another
    round can help."""

    def __init__(self) -> None:
        self.failures: list[tuple[Endpoint, BaseException, str]] = []
        self.retryable = False

    def failed(self, endpoint: Endpoint, exc: BaseException, retryable: bool) -> None:
        self.failures.append((endpoint, exc, _reason(exc)))
        self.retryable = self.retryable or retryable


class Client:
    """One program's connection to Apsis: httpx clients, the daemons and the token."""

    def __init__(self, url: str | None = None, token: str | None = None, *,
                 timeout: float = 30.0, retry_for: float | None = 30.0,
                 daemons: Daemons | None = None,
                 on_switch: Callable[[str, str], None] | None = None) -> None:
        """`url`: one URL or a comma-separated list (else APSIS_URL, else the URL `make
        run` left, else the default). `daemons` shares another client's (`sibling`)."""
        self.daemons = daemons or Daemons(parse_urls(url or os.environ.get("APSIS_URL")
                                                     or find_url()), on_switch)
        self.token = token if token is not None else (os.environ.get("APSIS_TOKEN") or None)
        self.timeout = timeout
        self.retry_for = retry_for
        self._http: dict[Endpoint, httpx.AsyncClient] = {}
        self._pages_refused = False  # by a daemon older than GET /runs?pages=N
        self._job_ids_refused = False  # by a daemon older than GET /runs?job_id=a&job_id=b

    def sibling(self, *, timeout: float | None = None,
                retry_for: float | None | Literal["same"] = "same") -> Client:
        """A client with other patience on the same daemons: when one moves to another
        daemon, the other follows."""
        return Client(token=self.token, timeout=self.timeout if timeout is None else timeout,
                      retry_for=self.retry_for if retry_for == "same" else retry_for,
                      daemons=self.daemons)

    @property
    def url(self) -> str:
        """The URL of the daemon in use (the last that answered, else the first)."""
        return self.daemons.current.url

    @property
    def urls(self) -> list[str]:
        return [e.url for e in self.daemons.endpoints]

    # -- plumbing -----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _ssl_context(self) -> Any:
        import ssl

        return ssl.create_default_context(cafile=os.environ.get("APSIS_CA") or None)

    def _client(self, endpoint: Endpoint) -> httpx.AsyncClient:
        http = self._http.get(endpoint)
        if http is None:
            httpx = _import_httpx()
            # Plain http or a unix socket never does TLS: verify=False spares loading the
            # CA bundle (~50 ms of every CLI command's start).  redirects are not followed
            # by httpx (a standby's 307 is ours to follow), so no request can move to
            # https unverified.
            kwargs: dict[str, Any] = {"verify": False}
            if endpoint.uds is not None:
                kwargs["transport"] = httpx.AsyncHTTPTransport(uds=endpoint.uds, verify=False)
            elif endpoint.http_base.startswith("https:"):
                kwargs["verify"] = self._ssl_context()
            # With other daemons to try, a host that does not answer is not waited for long.
            connect = min(self.timeout, CONNECT_TIMEOUT) if len(self.daemons) > 1 else self.timeout
            http = httpx.AsyncClient(base_url=endpoint.http_base, headers=self._headers(),
                                     timeout=httpx.Timeout(self.timeout, connect=connect),
                                     **kwargs)
            self._http[endpoint] = http
        return http

    async def close(self) -> None:
        clients, self._http = list(self._http.values()), {}
        for http in clients:
            await http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _unavailable(self, failures: list[tuple[Endpoint, BaseException, str]],
                     tried: float | None = None) -> ApsisUnavailable:
        during = f" (retried for {tried:.0f}s)" if tried and tried >= 1 else ""
        reasons = [(endpoint.url, why) for endpoint, _, why in failures]
        if len(self.daemons) == 1 and len(failures) == 1:
            endpoint, exc, _ = failures[0]
            why = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            return ApsisUnavailable(f"cannot reach Apsis at {endpoint.url}{during}: {why}",
                                    failures=reasons)
        named = ", ".join(f"{url} ({why})" for url, why in reasons)
        return ApsisUnavailable(f"no daemon answered{during}: {named}", failures=reasons)

    async def _request(self, method: str, path: str, *, params: Any = None,
                       body: Any = None, stream: bool = False) -> Any:
        """One API call on the daemon in use, else the next that answers: retries what
        cannot have reached a daemon (and GETs that broke), sends a write a standby
        refuses on to the leader, and waits between rounds of tries. With ``stream``, a
        successful answer's body is left to read (and close) as it arrives."""
        httpx = _import_httpx()
        started = time.monotonic()
        delay = BACKOFF_MIN
        several = len(self.daemons) > 1
        while True:
            round_ = _Round()
            todo = self.daemons.in_turn()
            hops = 0
            while todo:
                endpoint = todo.pop(0)
                try:
                    http = self._client(endpoint)
                    response = await http.send(http.build_request(
                        method, API + path, params=params, json=body), stream=stream)
                    if stream and response.status_code >= 300:
                        await response.aread()  # what a refusal says; closes the stream
                except httpx.TransportError as exc:
                    untrusted = _untrusted_certificate(exc)
                    if untrusted is not None:  # retrying cannot fix it
                        raise ApsisUnavailable(
                            f"the daemon at {endpoint.url} has a certificate this client does "
                            f"not trust ({untrusted})", code="tls") from None
                    connect_failed = isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))
                    if not connect_failed and method != "GET":
                        # It may have been applied: do not send it twice.
                        raise ApsisUnavailable(
                            f"lost the connection to Apsis at {endpoint.url} during {method} "
                            f"{path}: {exc or type(exc).__name__}") from None
                    self.daemons.failed(endpoint)
                    round_.failed(endpoint, exc, True)
                    continue
                status = response.status_code
                if status == 307 and hops < MAX_HOPS:
                    # A standby's answer to a write: the leader is there.
                    leader = self.daemons.redirected(response.headers.get("location", ""),
                                                     endpoint)
                    if leader is not None:
                        hops += 1
                        todo = [leader, *(e for e in todo if e != leader)]
                        continue
                if status < 300:
                    self.daemons.answered(endpoint)
                    return response
                refusal = _refusal(status, response.content, response.reason_phrase)
                if several and self._another_may_do(endpoint, round_, status, refusal):
                    continue
                raise refusal
            if not round_.retryable:
                raise self._unavailable(round_.failures)
            await _sleep(self._retry_pause(round_.failures, started, delay))
            delay = min(delay * 2, BACKOFF_MAX)

    def _another_may_do(self, endpoint: Endpoint, round_: _Round, status: int,
                        refusal: ApsisError) -> bool:
        """A 503 (a standby without a leader yet, a daemon without its database or taking
        over) or an answer not from Apsis: the next daemon of a list may do."""
        if status == 503 or refusal.code == "not_apsis":
            self.daemons.failed(endpoint)
            round_.failed(endpoint, refusal, status == 503)
            return True
        return False

    def _retry_pause(self, failures: list[tuple[Endpoint, BaseException, str]], started: float,
                     delay: float) -> float:
        """How long to wait before the next round; ApsisUnavailable once `retry_for` is up."""
        waited = time.monotonic() - started
        if self.retry_for is not None and waited >= self.retry_for:
            raise self._unavailable(failures, waited) from None
        return self._next_pause(delay, started)

    def _next_pause(self, delay: float, since: float) -> float:
        """About `delay` (jittered), but never past `retry_for` counted from `since`:
        `--retry-for 3s` gives up after three seconds, not after the next back-off."""
        pause = _jitter(delay)
        if self.retry_for is not None:
            pause = min(pause, max(self.retry_for - (time.monotonic() - since), 0.0))
        return pause

    def get_now(self, path: str, params: Any = None) -> Any:
        """One GET, its JSON answer, without an event loop: for a command that makes one
        request. Over http:// or a unix socket it is a plain socket (no httpx, no TLS
        set-up: tens of milliseconds of a command's start); https goes through httpx.
        Retries, daemons and errors as for the async calls."""
        if any(e.http_base.startswith("https:") for e in self.daemons.endpoints):
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
        several = len(self.daemons) > 1
        while True:
            round_ = _Round()
            for endpoint in self.daemons.in_turn():
                try:
                    status, reason, body = self._plain_get(endpoint, target)
                except OSError as exc:
                    self.daemons.failed(endpoint)
                    round_.failed(endpoint, exc, True)
                    continue
                if status < 400:
                    self.daemons.answered(endpoint)
                    return json.loads(body)
                refusal = _refusal(status, body, reason)
                if several and self._another_may_do(endpoint, round_, status, refusal):
                    continue
                raise refusal
            if not round_.retryable:
                raise self._unavailable(round_.failures)
            time.sleep(self._retry_pause(round_.failures, started, delay))
            delay = min(delay * 2, BACKOFF_MAX)

    def _plain_get(self, endpoint: Endpoint, target: str) -> tuple[int, str, bytes]:
        """(status, reason, body) of one HTTP/1.1 GET on a connection of its own."""
        return _plain_get(endpoint, target, self._headers(), self.timeout)

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

    async def runs(self, *, job_id: str | Sequence[str] | None = None, states: Iterable[str] | None = None,
                   since: str | dt.datetime | None = None, until: str | dt.datetime | None = None,
                   labels: Iterable[str] | None = None, args: Mapping[str, str] | None = None,
                   limit: int = 100, cursor: str | None = None,
                   summary: bool = False) -> dict[str, Any]:
        """One page, newest first: `{runs, seq, cursor}` (cursor None on the last page).
        `summary`: each run as its summary (what a table shows), a fraction of the bytes.
        Several job ids mean runs of any of them; a daemon older than that refuses them
        (a 400 naming job_id): then, and from then on, one request a job, merged here into
        one page (the last: its cursor is None; `iter_runs` reads such jobs whole)."""
        filters: dict[str, Any] = {"states": states, "since": since, "until": until,
                                   "labels": labels, "args": args}
        jobs = _several(job_id)
        if jobs is None or not self._job_ids_refused:
            try:
                return await self._get("/runs", runs_params(
                    job_id=job_id, **filters, limit=limit, cursor=cursor, summary=summary))
            except ApsisError as exc:
                if jobs is None or not _refuses(exc, "job_id"):
                    raise
                self._job_ids_refused = True
        import asyncio

        pages = await asyncio.gather(*(self.runs(job_id=job, **filters, limit=limit,
                                                 summary=summary) for job in jobs))
        found = sorted((run for page in pages for run in page["runs"]), key=_api_order,
                       reverse=True)
        return {"runs": found[:limit], "seq": min(page["seq"] for page in pages),
                "cursor": None}

    async def run_page_lines(self, pages: int, *, limit: int = 1000, cursor: str | None = None,
                             summary: bool = False) -> AsyncIterator[bytes]:
        """Up to `pages` pages of runs after `cursor` from one request (`GET /runs?pages=N`),
        each page's JSON text as soon as it has arrived whole. A caller that applies each
        page as it comes keeps the daemon writing the next ones meanwhile; a body read
        whole first (while the caller is busy with the last one) stalls the daemon once
        the socket's buffers are full. A daemon older than `pages` refuses it (a 400
        naming it): then, and from then on for this client, one request a page."""
        params = runs_params(limit=limit, cursor=cursor, summary=summary)
        response = None
        if not self._pages_refused:
            try:
                response = await self._request("GET", "/runs", params=params + [("pages", pages)],
                                               stream=True)
            except ApsisError as exc:
                if not _refuses(exc, "pages"):
                    raise
                self._pages_refused = True
        if response is None:
            for _ in range(pages):
                text = (await self._request("GET", "/runs", params=params)).content
                yield text
                cursor = json.loads(text)["cursor"]  # (the caller decodes the page too)
                if cursor is None:
                    return
                params = runs_params(limit=limit, cursor=cursor, summary=summary)
            return
        httpx = _import_httpx()
        try:
            head: list[bytes] = []  # the start of a line that spans chunks
            async for chunk in response.aiter_bytes():
                if b"\n" not in chunk:  # most chunks: a page is many chunks long
                    head.append(chunk)
                    continue
                *lines, tail = chunk.split(b"\n")
                head.append(lines[0])
                lines[0] = b"".join(head)
                head = [tail] if tail else []
                for line in lines:
                    if line:
                        yield line
            if head:
                yield b"".join(head)
        except httpx.TransportError as exc:
            raise ApsisUnavailable(f"lost the connection to Apsis during GET /runs: "
                                   f"{exc or type(exc).__name__}") from None
        finally:
            await response.aclose()

    async def iter_runs(self, *, page_size: int = 1000, **filters: Any) -> AsyncIterator[dict[str, Any]]:
        """Every matching run, page after page (filters as for `runs`)."""
        filters.pop("limit", None)
        cursor = filters.pop("cursor", None)
        jobs = _several(filters.get("job_id"))
        while not (jobs and self._job_ids_refused):
            page = await self.runs(limit=page_size, cursor=cursor, **filters)
            if jobs and self._job_ids_refused:
                break  # refused just now: that page was one page a job, merged
            for run in page["runs"]:
                yield run
            cursor = page["cursor"]
            if cursor is None:
                return
        # A daemon older than several job ids: each job's runs whole, merged.
        found = [run for job in jobs or () async for run in self.iter_runs(
            page_size=page_size, **{**filters, "job_id": job})]
        for run in sorted(found, key=_api_order, reverse=True):
            yield run

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

    def _ws_connect(self, endpoint: Endpoint, path: str, params: list[tuple[str, Any]]) -> Any:
        from websockets.asyncio.client import connect, unix_connect

        query = urlencode([(k, v) for k, v in params if v is not None])
        uri = f"{endpoint.ws_base}{API}{path}" + (f"?{query}" if query else "")
        open_timeout = min(self.timeout, CONNECT_TIMEOUT) if len(self.daemons) > 1 else self.timeout
        kwargs: dict[str, Any] = {"additional_headers": self._headers(),
                                  "open_timeout": open_timeout, "close_timeout": 2,
                                  "max_size": 2**24}
        if endpoint.uds is not None:
            return unix_connect(endpoint.uds, uri, **kwargs)
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

        A dropped stream goes on at once on the next daemon of the list; when none
        answers, it waits between rounds. A connection that lives less than
        `min_lifetime` seconds does not reset the backoff, so a daemon that accepts and
        hangs up cannot cause a storm. A refused handshake that retrying cannot fix is
        raised at once; no connection for `retry_for` seconds raises ApsisUnavailable.
        ``on_state`` hears "connecting", then "live" and "disconnected" as they change.

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
        round_ = _Round()  # the daemons that failed since the last good connection
        while True:
            endpoint = self.daemons.current
            connected_at: float | None = None
            error: BaseException | None = None
            try:
                async with self._ws_connect(endpoint, path, params()) as ws:
                    connected_at = time.monotonic()
                    down_since = None
                    self.daemons.answered(endpoint)
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
            lived = connected_at is not None and time.monotonic() - connected_at >= min_lifetime
            self.daemons.failed(endpoint)
            if lived:
                round_ = _Round()
                if len(self.daemons) > 1:
                    continue  # straight on with the next daemon, from where this one stopped
            else:
                round_.failed(endpoint, error or ConnectionError("connection closed"), True)
                if len(round_.failures) < len(self.daemons):
                    continue  # another daemon is still to be tried in this round
            backoff, down_since = await self._pause(backoff, connected_at, down_since,
                                                    min_lifetime, round_.failures)
            round_ = _Round()

    async def _pause(self, backoff: float, connected_at: float | None, down_since: float | None,
                     min_lifetime: float, failures: list[tuple[Endpoint, BaseException, str]],
                     ) -> tuple[float, float | None]:
        """Sleeps before a reconnection; returns the next backoff and the outage start."""
        now = time.monotonic()
        if connected_at is not None and now - connected_at >= min_lifetime:
            backoff = BACKOFF_MIN  # it was a real connection: try again soon
        elif connected_at is None:
            down_since = down_since if down_since is not None else now
            if self.retry_for is not None and now - down_since >= self.retry_for:
                raise self._unavailable(failures, now - down_since)
        await _sleep(self._next_pause(backoff, down_since) if down_since is not None
                     else _jitter(backoff))
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


def runs_params(*, job_id: str | Sequence[str] | None = None, states: Iterable[str] | None = None,
                since: str | dt.datetime | None = None, until: str | dt.datetime | None = None,
                labels: Iterable[str] | None = None, args: Mapping[str, str] | None = None,
                limit: int = 100, cursor: str | None = None,
                summary: bool = False) -> list[tuple[str, Any]]:
    """The query of `GET /runs` (what `Client.runs` sends; `get_now` takes it too)."""
    params: list[tuple[str, Any]] = []
    params += [("job_id", job_id)] if isinstance(job_id, str) else [
        ("job_id", job) for job in job_id or ()]
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


def _several(job_id: str | Sequence[str] | None) -> list[str] | None:
    """The job ids of a query naming more than one job, else None."""
    return None if job_id is None or isinstance(job_id, str) or len(job_id) < 2 else list(job_id)


def _refuses(exc: ApsisError, parameter: str) -> bool:
    """Whether a daemon refused a query parameter it is too old to know (or to repeat)."""
    return exc.status == 400 and re.search(rf"\b{re.escape(parameter)}\b", exc.message) is not None


def _api_order(run: dict[str, Any]) -> tuple[dt.datetime, int]:
    """The order of `GET /runs` (newest first is its reverse): schedule time, else
    creation, then run number."""
    times = run.get("times") or {}
    when = times.get("schedule") or times.get("new")
    number = run.get("run_id", "r0")[1:]
    return (dt.datetime.fromisoformat(when) if when else dt.datetime.min.replace(tzinfo=dt.UTC),
            int(number) if number.isdigit() else 0)


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


def _reason(exc: BaseException) -> str:
    """A few words on why a daemon did not answer, for a list of them."""
    import socket

    if isinstance(exc, ApsisError):
        return exc.message if exc.code != "not_apsis" else f"not Apsis: {exc.message}"
    seen: BaseException | None = exc
    for _ in range(8):  # httpx wraps httpcore, which wraps the OSError
        if seen is None:
            break
        if isinstance(seen, ConnectionRefusedError):
            return "refused"
        if isinstance(seen, TimeoutError) or "timeout" in type(seen).__name__.lower():
            return "timeout"
        if isinstance(seen, socket.gaierror):
            return "unknown host"
        if isinstance(seen, FileNotFoundError):
            return "no such socket"
        seen = seen.__cause__ or seen.__context__
    text = str(exc)
    if "refused" in text.lower():  # httpx's "All connection attempts failed" keeps the cause
        return "refused"
    return text or type(exc).__name__


def _plain_get(endpoint: Endpoint, target: str, headers: Mapping[str, str],
               timeout: float) -> tuple[int, str, bytes]:
    """(status, reason, body) of one HTTP/1.1 GET on a connection of its own."""
    import socket

    parts = urlsplit(endpoint.http_base)
    if endpoint.uds is not None:
        sock = socket.socket(socket.AF_UNIX)
        sock.settimeout(timeout)
        try:
            sock.connect(endpoint.uds)
        except OSError:
            sock.close()
            raise
    else:
        sock = socket.create_connection((parts.hostname, parts.port or 80), timeout)
    lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    with sock:
        sock.sendall(f"GET {parts.path}{target} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                     f"Accept: application/json\r\nConnection: close\r\n{lines}\r\n"
                     .encode())
        data = bytearray()
        while chunk := sock.recv(1 << 16):
            data += chunk
    head, found, body = bytes(data).partition(b"\r\n\r\n")
    status_line, *fields_text = head.decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not found or not version.startswith("HTTP/") or not code.isdigit():
        raise ConnectionError(f"no HTTP answer from {endpoint.url} (is it an Apsis daemon?)")
    fields = {name.strip().lower(): value.strip()
              for name, _, value in (line.partition(":") for line in fields_text)}
    if "chunked" in fields.get("transfer-encoding", "").lower():
        body = _dechunk(body)
    elif fields.get("content-length", "").isdigit():
        length = int(fields["content-length"])
        if len(body) < length:
            raise ConnectionError(f"the answer from {endpoint.url} was cut short")
        body = body[:length]
    return int(code), reason, body


# -- where `make run` left its daemon --------------------------------------------------


def url_file() -> str:
    """Where `make run` writes its daemon's URL, for `apsis` to find when neither
    --url nor APSIS_URL says: $XDG_RUNTIME_DIR/apsis/url, else ~/.cache/apsis/url."""
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime:
        return os.path.join(runtime, "apsis", "url")
    return os.path.join(os.path.expanduser("~"), ".cache", "apsis", "url")


def find_url() -> str:
    """The URL in `url_file()` if an Apsis daemon answers there (a plain GET of /alive,
    without a token: any Apsis answer, even 401, will do), else DEFAULT_URL."""
    try:
        with open(url_file(), encoding="utf-8") as f:
            found = f.read().strip()
        endpoint = parse_endpoint(found)
        if endpoint.uds is None and not endpoint.http_base.startswith("http:"):
            return DEFAULT_URL
        status, _, body = _plain_get(endpoint, API + "/alive", {}, DISCOVERY_TIMEOUT)
    except (OSError, ApsisError):
        return DEFAULT_URL
    if status == 200:
        try:
            return found if "version" in json.loads(body) else DEFAULT_URL
        except ValueError:
            return DEFAULT_URL
    return found if _refusal(status, body, "").code != "not_apsis" else DEFAULT_URL

"""The daemon's asyncio client for the agent, on this host or over ssh.

The client runs a `connect` command (see `local_connect_command` and
`ssh_connect_command`) and speaks the agent's line protocol over its stdin/stdout.
When that process dies (ssh dropped, someone killed it), the client runs it again.
A `start` or `signal` in flight then fails with `AgentConnectionError` and is never
resent (the caller asks `status` to learn whether it happened); the idempotent
requests (status, list, read, clean, ping) are sent again once reconnected. Exits are delivered at least
once until `clean`: the agent replays every finished process on each connect, so a
consumer of `exits()` (or of `on_exit`) must treat a repeated exit as a no-op.
"""

from __future__ import annotations

import asyncio
import base64
import builtins
import contextlib
import heapq
import itertools
import json
import logging
import shlex
import sys
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Self

log = logging.getLogger("apsis.agent")

AGENT_PATH = Path(__file__).with_name("agent.py")
PROTOCOL = 1  # agent.PROTOCOL; not imported, to keep the agent a file apart
DEFAULT_REMOTE_STATE_DIR = "~/.apsis/agent"
STREAM_LIMIT = 64 * 1024 * 1024  # one reply line: a base64 read of up to 4 MiB fits
STDERR_TAIL = 4096
# Starts sent and not yet answered, at most: the rest of a burst waits here, not in the
# agent's input, so what comes meanwhile (cleans of the runs that ended, signals) gets
# there in time, and the agent takes their spool files again instead of making new ones.
START_WINDOW = 64

Outputs = Literal["combined", "split"]

# Run as `python3 -c LOADER N connect ...` with the agent's source (N bytes) sent first
# on stdin; the protocol follows on the same stdin. One line, no backslashes and no
# single quotes, so it survives any login shell once shlex-quoted.
LOADER = (
    "import sys;n=int(sys.argv[1]);b=sys.stdin.buffer.read(n);"
    'len(b)==n or sys.exit("apsis agent: short source on stdin");'
    'g={"__name__":"apsis_agent","AGENT_SOURCE":b.decode()};'
    'exec(compile(b,"apsis-agent.py","exec"),g);sys.exit(g["main"](sys.argv[2:]))'
)


class AgentError(Exception):
    """The agent refused a request; `code` is stable (`spawn_failed`, `not_found`, ...)."""

    def __init__(self, code: str, message: str, proc: ProcStatus | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.proc = proc

    def __str__(self) -> str:
        return self.message


class AgentConnectionError(AgentError):
    """The connect command failed or the connection dropped; the stderr tail says why."""

    def __init__(self, message: str) -> None:
        super().__init__("connection", message)


@dataclass(frozen=True, slots=True)
class ProcStatus:
    """What the agent knows about one process; `outputs` maps names to spool paths, and
    `lengths` (from an agent that sends them, once the process has ended) to their sizes
    at its end."""

    proc_id: str
    state: str  # running | exited | error | lost
    pid: int | None = None
    argv: list[str] | None = None
    cwd: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)
    start_time: str | None = None
    end_time: str | None = None
    exit_code: int | None = None
    signal: str | None = None
    message: str | None = None
    lengths: dict[str, int | None] | None = None

    @property
    def finished(self) -> bool:
        return self.state != "running"

    @classmethod
    def from_jso(cls, jso: dict[str, Any]) -> ProcStatus:
        return cls(
            proc_id=jso["proc_id"],
            state=jso["state"],
            pid=jso.get("pid"),
            argv=jso.get("argv"),
            cwd=jso.get("cwd"),
            outputs=dict(jso.get("outputs") or {}),
            start_time=jso.get("start_time"),
            end_time=jso.get("end_time"),
            exit_code=jso.get("exit_code"),
            signal=jso.get("signal"),
            message=jso.get("message"),
            lengths=jso.get("lengths"),
        )


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Bytes from `offset`; `length` is the spool size now, and final once `final`."""

    data: bytes
    offset: int
    length: int
    final: bool


def local_connect_command(
    state_dir: str | Path, *, idle_timeout: float | None = None, python: str = sys.executable
) -> list[str]:
    """The command that connects to (and if need be starts) the agent on this host.

    Runs agent.py by path rather than `-m apsis.agent`: nothing but the file is needed.
    """
    argv = [python, str(AGENT_PATH), "connect", "--state-dir", str(state_dir)]
    if idle_timeout is not None:
        argv += ["--idle-timeout", repr(float(idle_timeout))]
    return argv


def bootstrap_command(
    state_dir: str = DEFAULT_REMOTE_STATE_DIR,
    *,
    python: str = "python3",
    idle_timeout: float | None = None,
) -> tuple[list[str], bytes]:
    """A `connect` command that needs no file on the host, and the stdin preamble for it.

    The preamble is the agent's source; pass it to `AgentClient.connect`.
    """
    source = AGENT_PATH.read_bytes()
    argv = [python, "-c", LOADER, str(len(source)), "connect", "--state-dir", state_dir]
    if idle_timeout is not None:
        argv += ["--idle-timeout", repr(float(idle_timeout))]
    return argv, source


def ssh_connect_command(
    host: str,
    *,
    user: str | None = None,
    state_dir: str = DEFAULT_REMOTE_STATE_DIR,
    python: str = "python3",
    idle_timeout: float | None = None,
    ssh: Sequence[str] = ("ssh",),
    ssh_options: Sequence[str] = (),
) -> tuple[list[str], bytes]:
    """The bootstrap command run on `host` through the user's own OpenSSH setup."""
    if not host or host.startswith("-"):
        raise ValueError(f"bad host name: {host!r}")
    remote, preamble = bootstrap_command(state_dir, python=python, idle_timeout=idle_timeout)
    # BatchMode: a password prompt would hang a scheduler; fail with a message instead.
    argv = [*ssh, "-o", "BatchMode=yes", *ssh_options]
    if user:
        argv += ["-l", user]
    argv += [host, shlex.join(remote)]
    return argv, preamble


class AgentClient:
    """One connection to an agent, re-established whenever the connect process dies."""

    def __init__(
        self,
        *,
        reconnect: bool = True,
        request_timeout: float = 30.0,
        connect_timeout: float = 30.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.reconnect = reconnect
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.max_backoff = max_backoff
        self.hello: dict[str, Any] = {}
        self.last_error: AgentConnectionError | None = None
        self._command: list[str] | None = None
        self._preamble = b""
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._connected = asyncio.Event()
        self._closed = False
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        # (deadline, request id, op, limit) of the requests in flight, soonest first, and
        # one timer for the soonest: a timer each (wait_for) cost a burst of 2 000 starts
        # a heap of thousands of timers, each push and pop comparing them in Python.
        self._deadlines: list[tuple[float, int, str, float]] = []
        self._expiry: asyncio.TimerHandle | None = None
        self._exits: asyncio.Queue[ProcStatus | None] = asyncio.Queue()
        self._on_exit: Callable[[ProcStatus], None] | None = None
        self._stderr_tail = bytearray()
        # Request lines of this turn of the loop, sent together once it ends (`_queue`).
        self._outbox: list[bytes] = []
        self._outbox_proc: asyncio.subprocess.Process | None = None
        self._start_window = asyncio.Semaphore(START_WINDOW)
        # Proc ids to clean, and their callers, sent as one request (`clean`).
        self._cleans: dict[str, list[asyncio.Future[None]]] = {}
        self._sending_cleans: set[asyncio.Task[None]] = set()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def connect_pid(self) -> int | None:
        """The pid of the local `connect` (or ssh) process, for tests and diagnostics."""
        return self._proc.pid if self._proc is not None else None

    # -- connection ---------------------------------------------------------------

    async def connect(self, command: Sequence[str], preamble: bytes = b"") -> None:
        """Run `command` and wait for the agent's hello; raise if it cannot connect."""
        if self._command is not None:
            raise RuntimeError("AgentClient.connect() called twice")
        self._command = list(command)
        self._preamble = preamble
        await self._open()
        self._supervisor = asyncio.create_task(self._supervise())

    async def _open(self) -> None:
        assert self._command is not None
        what = shlex.join(self._command[:2] + (["..."] if len(self._command) > 2 else []))
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=STREAM_LIMIT,
                # Out of the daemon's terminal's reach: Ctrl-C is the daemon's business.
                start_new_session=True,
            )
        except OSError as exc:
            raise AgentConnectionError(f"cannot run {what}: {exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None
        tail = bytearray()
        stderr_task = asyncio.create_task(self._collect_stderr(proc, tail))
        hello: Any = None
        problem = ""
        try:
            proc.stdin.write(self._preamble)
            await proc.stdin.drain()
            line = await asyncio.wait_for(proc.stdout.readline(), self.connect_timeout)
            hello = json.loads(line) if line else None
        except (OSError, ValueError) as exc:
            problem = str(exc)
        except TimeoutError:
            problem = f"no answer in {self.connect_timeout:g}s"
        except asyncio.CancelledError:  # close() during a reconnect: leave nothing behind
            stderr_task.cancel()
            await _stop_process(proc)
            raise
        if isinstance(hello, dict) and hello.get("protocol") != PROTOCOL:
            problem = (
                f"the agent there speaks protocol {hello.get('protocol')}, not {PROTOCOL}; "
                "it exits once idle, and the next connect starts the current one"
            )
            hello = None
        if not isinstance(hello, dict) or hello.get("event") != "hello":
            await _stop_process(proc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stderr_task, 1.0)
            reason = "; ".join(filter(None, [tail.decode(errors="replace").strip(), problem]))
            reason = reason or f"it exited with status {proc.returncode}"
            raise AgentConnectionError(f"cannot connect to the agent with {what}: {reason}")
        self._stderr_tail = tail
        self._proc = proc
        self.hello = hello
        self._reader = asyncio.create_task(self._read_loop(proc))
        self._connected.set()

    @staticmethod
    async def _collect_stderr(proc: asyncio.subprocess.Process, tail: bytearray) -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            tail += chunk
            del tail[:-STDERR_TAIL]

    async def _read_loop(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                self._dispatch(json.loads(line))
        except (OSError, ValueError) as exc:
            log.warning("agent connection: %s", exc)
        finally:
            self._connected.clear()
            lost = AgentConnectionError("the connection to the agent was lost")
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(lost)
            self._pending.clear()
            await _stop_process(proc)

    def _dispatch(self, msg: dict[str, Any]) -> None:
        event = msg.get("event")
        if event == "exited":
            try:
                status = ProcStatus.from_jso(msg)
            except (KeyError, TypeError) as exc:
                log.warning("bad exit event from the agent: %r: %s", msg, exc)
                return
            if self._on_exit is None:
                self._exits.put_nowait(status)
                return
            try:
                self._on_exit(status)
            except Exception:  # the consumer's bug must not end the connection
                log.exception("handling the exit of %s failed", status.proc_id)
        elif event is None:
            fut = self._pending.get(msg.get("id"))  # type: ignore[arg-type]
            if fut is not None and not fut.done():
                fut.set_result(msg)

    async def _supervise(self) -> None:
        """Reconnect with backoff each time the connection is lost, until close()."""
        while not self._closed:
            assert self._reader is not None
            with contextlib.suppress(Exception):
                await asyncio.shield(self._reader)
            if self._closed or not self.reconnect:
                break
            tail = self._stderr_tail.decode(errors="replace").strip()
            log.warning("agent connection lost%s; reconnecting", f": {tail}" if tail else "")
            delay = 0.05
            while not self._closed:
                try:
                    await self._open()
                    self.last_error = None
                    break
                except AgentConnectionError as exc:
                    self.last_error = exc
                    log.warning("%s; retrying in %.1fs", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.max_backoff)

    async def close(self) -> None:
        """Drop the connection; the agent and its programs carry on."""
        self._closed = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        if self._proc is not None:
            await _stop_process(self._proc)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        self._exits.put_nowait(None)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- requests -----------------------------------------------------------------

    async def _request(self, op: str, *, retry: bool = False, timeout: float | None = None,
                       **fields: Any) -> dict[str, Any]:
        """Send one request and wait for its reply (`timeout`, else `request_timeout`).

        With `retry` (idempotent requests only), a connection lost in flight is waited
        out and the request sent again; otherwise it raises AgentConnectionError.
        """
        loop = asyncio.get_running_loop()
        limit = self.request_timeout if timeout is None else timeout
        deadline = loop.time() + limit
        while True:
            try:
                return await self._request_once(op, fields, deadline, limit)
            except AgentConnectionError:
                if not retry or self._closed or not self.reconnect or loop.time() >= deadline:
                    raise

    async def _request_once(
        self, op: str, fields: dict[str, Any], deadline: float, limit: float
    ) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        while not self._connected.is_set():
            if self._closed or self._command is None:
                raise AgentConnectionError("the agent client is not connected")
            try:
                await asyncio.wait_for(self._connected.wait(), deadline - loop.time())
            except TimeoutError:
                raise AgentConnectionError(
                    f"not connected to the agent: {self.last_error or 'reconnecting'}"
                ) from None
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        req_id = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = loop.create_future()
        self._pending[req_id] = fut
        self._expire_at(deadline, req_id, op, limit)
        try:
            self._queue(proc, json.dumps({"id": req_id, "op": op, **fields}).encode() + b"\n")
            await proc.stdin.drain()
            reply = await fut
        except OSError as exc:
            raise AgentConnectionError(f"the connection to the agent was lost: {exc}") from exc
        finally:
            self._pending.pop(req_id, None)
            # Those answered in order leave the heap at once: it holds what is waiting.
            while self._deadlines and self._deadlines[0][1] not in self._pending:
                heapq.heappop(self._deadlines)
        if not reply.get("ok"):
            jso = reply.get("proc")
            raise AgentError(
                reply.get("code", "error"),
                reply.get("error", "unknown error"),
                ProcStatus.from_jso(jso) if isinstance(jso, dict) else None,
            )
        return reply

    def _expire_at(self, deadline: float, req_id: int, op: str, limit: float) -> None:
        """Fails the request with a timeout if it is still waiting at `deadline`."""
        heapq.heappush(self._deadlines, (deadline, req_id, op, limit))
        if self._deadlines[0][1] == req_id:  # the soonest now
            if self._expiry is not None:
                self._expiry.cancel()
            self._expiry = asyncio.get_running_loop().call_at(deadline, self._expire)

    def _expire(self) -> None:
        """Fails the requests whose deadline passed; the timer then waits for the next."""
        self._expiry = None
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines
        while deadlines:
            deadline, req_id, op, limit = deadlines[0]
            fut = self._pending.get(req_id)
            if fut is not None and not fut.done():
                if deadline > loop.time():
                    self._expiry = loop.call_at(deadline, self._expire)
                    return
                fut.set_exception(AgentError("timeout", f"no reply to {op!r} in {limit:g}s"))
            heapq.heappop(deadlines)

    def _queue(self, proc: asyncio.subprocess.Process, line: bytes) -> None:
        """Requests made in one turn of the loop go out in one write once it ends: a
        burst of 2 000 starts is a few writes, not 2 000 (each a system call, during
        which another of the daemon's threads may take the GIL and keep the loop waiting)."""
        if self._outbox and self._outbox_proc is not proc:
            self._send_outbox()
        if not self._outbox:
            self._outbox_proc = proc
            asyncio.get_running_loop().call_soon(self._send_outbox)
        self._outbox.append(line)

    def _send_outbox(self) -> None:
        data, proc = b"".join(self._outbox), self._outbox_proc
        self._outbox, self._outbox_proc = [], None
        # A connection replaced meanwhile: its requests failed with it (`_read_loop`).
        if data and proc is self._proc and proc is not None and proc.stdin is not None:
            with contextlib.suppress(OSError, RuntimeError):  # the read loop sees the loss
                proc.stdin.write(data)

    async def ping(self, *, timeout: float | None = None) -> dict[str, Any]:
        """A round trip; `timeout` bounds the wait for a reconnect too."""
        return await self._request("ping", retry=True, timeout=timeout)

    async def start(
        self,
        argv: Sequence[str],
        *,
        proc_id: str | None = None,
        env: dict[str, str] | None = None,
        cwd: str | None = None,
        outputs: Outputs = "combined",
        inherit_env: bool = True,
        timeout: float | None = None,
    ) -> ProcStatus:
        """Start a program; AgentError `spawn_failed` if it cannot (`.proc` has the record).

        `exists` means a process with this id was already started: never twice. The
        program's environment is the agent's plus `env`, or only `env` without
        `inherit_env` (the agent's is that of the `connect` that started it).
        """
        fields: dict[str, Any] = {
            "argv": list(argv),
            "env": env or {},
            "outputs": outputs,
            "inherit_env": inherit_env,
        }
        if proc_id is not None:
            fields["proc_id"] = proc_id
        if cwd is not None:
            fields["cwd"] = cwd
        # The wait for a place in the window counts in the timeout: starts to a host
        # that went silent fail in `timeout`, not one window after another.
        loop = asyncio.get_running_loop()
        limit = self.request_timeout if timeout is None else timeout
        deadline = loop.time() + limit
        try:
            if self._start_window.locked():  # a timer only for a start that must wait
                async with asyncio.timeout(limit):
                    await self._start_window.acquire()
            else:
                await self._start_window.acquire()
        except TimeoutError:
            raise AgentError("timeout", f"not sent in {limit:g}s: the {START_WINDOW} starts "
                             "before it were not answered") from None
        try:
            reply = await self._request("start", timeout=max(0.0, deadline - loop.time()), **fields)
        finally:
            self._start_window.release()
        return ProcStatus.from_jso(reply["proc"])

    async def signal(
        self, proc_id: str, signal: str | int = "SIGTERM", *, group: bool = True
    ) -> None:
        """Signal the program's process group (or only the program, `group=False`)."""
        await self._request("signal", proc_id=proc_id, signal=signal, group=group)

    async def status(self, proc_id: str) -> ProcStatus:
        reply = await self._request("status", retry=True, proc_id=proc_id)
        return ProcStatus.from_jso(reply["proc"])

    async def read(
        self, proc_id: str, output: str = "output", offset: int = 0, max_bytes: int = 1 << 20
    ) -> OutputChunk:
        reply = await self._request(
            "read",
            retry=True,
            proc_id=proc_id,
            output=output,
            offset=offset,
            max_bytes=max_bytes,
        )
        return OutputChunk(
            base64.b64decode(reply["data"]), reply["offset"], reply["length"], reply["final"]
        )

    async def read_all(self, proc_id: str, output: str = "output", offset: int = 0) -> bytes:
        """Everything from `offset` to the spool's current end, in chunks."""
        parts = []
        while True:
            chunk = await self.read(proc_id, output, offset, 4 << 20)
            parts.append(chunk.data)
            offset += len(chunk.data)
            if not chunk.data or offset >= chunk.length:
                return b"".join(parts)

    async def clean(self, proc_id: str) -> None:
        """Delete the process's files, once its output is stored elsewhere.

        The cleans asked for in one turn of the loop go in one request (a burst of runs
        ends together). Retried on a lost connection, so `not_found` after a retry
        means it is done.
        """
        if not self._cleans:
            asyncio.get_running_loop().call_soon(self._start_cleans)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._cleans.setdefault(proc_id, []).append(fut)
        await fut

    def _start_cleans(self) -> None:
        task = asyncio.create_task(self._send_cleans())
        self._sending_cleans.add(task)  # held: the loop keeps only a weak reference
        task.add_done_callback(self._sending_cleans.discard)

    async def _send_cleans(self) -> None:
        batch, self._cleans = self._cleans, {}
        try:
            failed: dict[str, Exception] = dict(await self._clean_many(list(batch)))
        except Exception as exc:  # every caller hears of it, none waits for ever
            failed = {proc_id: exc for proc_id in batch}
        for proc_id, futs in batch.items():
            for fut in futs:
                if fut.done():
                    continue
                if proc_id in failed:
                    fut.set_exception(failed[proc_id])
                else:
                    fut.set_result(None)

    async def _clean_many(self, proc_ids: builtins.list[str]) -> dict[str, AgentError]:
        """The ids whose clean failed, with why; an agent from before `clean_many`
        (a remote host's that has not exited since) is asked one id at a time."""
        try:
            reply = await self._request("clean_many", retry=True, proc_ids=proc_ids)
            return {proc_id: AgentError(err["code"], err["error"])
                    for proc_id, err in reply["errors"].items() if err["code"] != "not_found"}
        except AgentError as exc:
            if exc.code != "bad_request" or "unknown op" not in exc.message:
                raise
        failed: dict[str, AgentError] = {}
        for proc_id in proc_ids:
            try:
                await self._request("clean", retry=True, proc_id=proc_id)
            except AgentError as exc:
                if exc.code != "not_found":
                    failed[proc_id] = exc
        return failed

    async def list(self) -> builtins.list[ProcStatus]:
        reply = await self._request("list", retry=True)
        return [ProcStatus.from_jso(p) for p in reply["procs"]]

    def on_exit(self, callback: Callable[[ProcStatus], None]) -> None:
        """Hands every exit to `callback` as it is read (those queued so far first) instead
        of to `exits()`: no task woken per exit, and an exit read with the reply to its
        start is known before that reply is acted on."""
        self._on_exit = callback
        while not self._exits.empty():
            status = self._exits.get_nowait()
            if status is not None:
                callback(status)

    async def exits(self) -> AsyncIterator[ProcStatus]:
        """Every exit the agent reports, until close(); at least once per process."""
        while (item := await self._exits.get()) is not None:
            yield item


async def _stop_process(proc: asyncio.subprocess.Process) -> None:
    """End a connect process: close its stdin (it exits on EOF), then kill if stuck."""
    if proc.stdin is not None and not proc.stdin.is_closing():
        proc.stdin.close()
    try:
        await asyncio.wait_for(proc.wait(), 2.0)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()

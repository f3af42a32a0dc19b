"""The Apsis agent: a small process supervisor that outlives the daemon.

This one file is the whole agent. It uses the standard library only and Python 3.9
syntax, because the daemon pipes this very source over ssh and runs it with whatever
`python3` the remote host has; nothing is installed there.

One long-lived server per state directory listens on a unix socket in it and starts
programs in their own sessions, with stdout/stderr going straight to spool files, so
a program and its output survive the daemon (and the ssh connection) dying. The
server reaps its children and writes each exit status to a file before it reports
it, so a daemon that was away learns every exit when it comes back. It exits by
itself once it has no live process and no client for `--idle-timeout` seconds.

`agent.py connect --state-dir DIR` starts the server if none is alive and then
proxies its own stdin/stdout to the server's socket: the daemon speaks the line
protocol (one JSON object per line) over the stdio of that process, locally or
through ssh alike. apsis/agent/README.md describes the protocol.
"""

from __future__ import annotations

import argparse
import base64
import collections
import datetime
import errno
import fcntl
import hashlib
import io
import itertools
import json
import os
import re
import secrets
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, cast

PROTOCOL = 1
SOCKET_NAME = "agent.sock"
SOURCE_NAME = "agent.py"
LOG_NAME = "agent.log"
SERVER_LOCK = "server.lock"
CONNECT_LOCK = "connect.lock"
RUNS_DIR = "runs"
JOURNAL_NAME = "runs.journal"
DEFAULT_IDLE_TIMEOUT = 60.0
MAX_LINE = 64 * 1024 * 1024  # a start request carries argv and env; be generous
MAX_READ = 4 * 1024 * 1024
MAX_OUTBUF = 256 * 1024 * 1024  # a client that never reads is dropped past this
LOG_ROTATE_BYTES = 1024 * 1024
ADOPTED_POLL_S = 1.0
GROUP_POLL_S = 0.1  # how often a program's group is looked at once its leader has exited
FLUSH_S = 0.005  # the longest a reply waits for the rest of its batch
OUTPUT_NAMES = {"combined": ("output",), "split": ("stdout", "stderr")}
SPOOL_SUFFIXES = ("output", "stdout", "stderr")
FINISHED_STATES = ("exited", "error", "lost")
# Spare spool files: no proc id starts with "_". At most so many are kept.
SPARE_PREFIX = "_spare."
MAX_SPARES = 1024
# So many spares are made ahead by a thread of their own, and made again as starts take
# them: creating a file is what a start costs most (a millisecond of the kernel's time
# on a busy file system), and a burst of starts finds them made.
SPARE_RESERVE = 256
# The journal is rewritten with one line per process once it holds this many lines
# and four times as many as there are processes: cleaned runs do not pile up.
COMPACT_MIN_LINES = 10000
STARTING_MESSAGE = "the agent stopped while starting this program; it may or may not have run"
# ASCII letters, digits and "._-", not starting with "." or "-", at most 128.
PROC_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
# Made once: json.dumps with any option makes an encoder per call (four a start, in a burst).
COMPACT_JSON = json.JSONEncoder(separators=(",", ":"))


class RequestError(Exception):
    """A request the server refuses; `code` is stable, the message is for people."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra


# ---------------------------------------------------------------------------------
# Small helpers


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()  # noqa: UP017 (3.9)


def _log(message: str) -> None:
    stamp = datetime.datetime.now().isoformat(sep=" ", timespec="milliseconds")
    try:
        sys.stderr.write(f"{stamp} [{os.getpid()}] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):
        pass


def _write_json_atomic(path: str, obj: Any) -> None:
    """Write then rename, so a reader (or a restarted agent) never sees half a file."""
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, json.dumps(obj, sort_keys=True).encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)


def _read_json(path: str) -> Any | None:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode())
    except (OSError, ValueError):
        return None


def _read_journal(path: str) -> tuple[dict[str, dict[str, Any]], int, bool]:
    """Replay the journal: ({proc_id: merged fields} of the uncleaned, lines, torn).

    Each line is one JSON object whose fields update its process; `clean` drops it.
    A line that does not parse (the tail of a write cut short) is skipped. `torn`:
    the file does not end with a newline, so the next append must start a new line.
    """
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return {}, 0, False
    table: dict[str, dict[str, Any]] = {}
    lines = 0
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        lines += 1
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict):
            continue
        proc_id = rec.pop("id", None)
        if not _valid_proc_id(proc_id):
            continue
        if rec.get("clean"):
            table.pop(proc_id, None)
        else:
            table.setdefault(proc_id, {}).update(rec)
    return table, lines, bool(data) and not data.endswith(b"\n")


def _journal_line(proc_id: str, fields: dict[str, Any]) -> bytes:
    return COMPACT_JSON.encode({"id": proc_id, **fields}).encode() + b"\n"


def recorded_pids(state_dir: str) -> list[tuple[int, int | None]]:
    """(pid, start ticks) of every program the state dir records as running.

    For tools and tests that must stop what an agent left behind.
    """
    found = []
    table, _, _ = _read_journal(os.path.join(state_dir, JOURNAL_NAME))
    for st in table.values():
        if st.get("state") == "running" and isinstance(st.get("pid"), int):
            found.append((st["pid"], st.get("start_ticks")))
    runs_dir = os.path.join(state_dir, RUNS_DIR)
    try:
        names = os.listdir(runs_dir)
    except OSError:
        names = []
    for name in names:  # the layout of agents before the journal
        info = _read_json(os.path.join(runs_dir, name, "pid.json"))
        if isinstance(info, dict) and isinstance(info.get("pid"), int):
            if not os.path.exists(os.path.join(runs_dir, name, "status.json")):
                found.append((info["pid"], info.get("start_ticks")))
    return found


def _signal_name(num: int | None) -> str | None:
    if num is None:
        return None
    try:
        return signal.Signals(num).name
    except ValueError:
        return str(num)


def _parse_signal(value: Any) -> int:
    """Accept 15, "15", "TERM" or "SIGTERM"."""
    if isinstance(value, bool):
        raise RequestError("bad_request", f"bad signal: {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip().upper()
        if text.isdigit():
            return int(text)
        if not text.startswith("SIG"):
            text = "SIG" + text
        try:
            return int(signal.Signals[text])
        except KeyError:
            pass
    raise RequestError("bad_request", f"unknown signal: {value!r}")


def _proc_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid apart."""
    try:
        fd = os.open(f"/proc/{pid}/stat", os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 4096).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)
    fields = data[data.rfind(")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def _file_size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


def _pid_alive(pid: int, start_ticks: int | None) -> bool:
    """Is `pid` still the process we started (and not a zombie or a reused pid)?"""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, but someone else's: compare start times below
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read().decode(errors="replace")
    except OSError:
        return True  # no /proc (macOS): the kill probe is all we have
    rest = data[data.rfind(")") + 2 :].split()
    if rest and rest[0] in ("Z", "X"):
        return False
    return not (start_ticks is not None and len(rest) > 19 and rest[19] != str(start_ticks))


def _group_alive(pgid: int) -> bool:
    """Does the process group `pgid` still have members, its leader having exited?

    A program's children stay in its group: it is not over until they are. The kernel
    does not reuse a pid while a group bears it, so a process that holds the pid again
    means the group is gone (without /proc, the group probe is all we have).
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return not os.path.exists(f"/proc/{pgid}")


# Signals a program finds at their default, whatever the server inherited: Python ignores
# SIGPIPE, and a server started by `nohup`, or in the background of a script, ignores
# SIGHUP, SIGINT and SIGQUIT, which a program would keep (a `timeout: {signal: INT}` would
# then do nothing). All but the two that cannot be changed, and glibc's own real-time ones.
_RESET_SIGNALS = tuple(sorted(
    sig for sig in signal.valid_signals()
    if sig < getattr(signal, "SIGRTMIN", 32) and sig not in (signal.SIGKILL, signal.SIGSTOP)))
_POSIX_SPAWN = hasattr(os, "posix_spawn")


def _use_popen() -> None:
    """posix_spawn cannot start a session on this system: Popen from now on."""
    global _POSIX_SPAWN
    _POSIX_SPAWN = False


def _find_program(name: str, env: dict[str, str]) -> str:
    """The file `name` runs, searched in the program's own PATH as Popen does
    (posix_spawnp would search the server's): the first executable one; else an
    OSError naming `name`, permission denied if a match was not executable."""
    if "/" in name:
        return name
    denied = False
    for directory in os.get_exec_path(env):
        path = os.path.join(directory, name)
        if os.access(path, os.X_OK) and not os.path.isdir(path):
            return path
        denied = denied or os.path.exists(path)
    code = errno.EACCES if denied else errno.ENOENT
    raise OSError(code, os.strerror(code), name)


def _become_subreaper() -> None:
    """Orphans of our programs come to us, not to pid 1, and `_reap` reaps them: the pid 1
    of a container may never reap, and a zombie would keep a finished group alive."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):  # not Linux: zombies go to pid 1 as before
        pass


def _valid_proc_id(proc_id: Any) -> bool:
    return isinstance(proc_id, str) and PROC_ID.fullmatch(proc_id) is not None


def _own_source() -> str:
    """This module's source: given by the ssh loader, or read from our own file."""
    source = globals().get("AGENT_SOURCE")
    if isinstance(source, str):
        return source
    with open(os.path.abspath(__file__), "rb") as f:
        return f.read().decode()


def source_version(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:16]


# ---------------------------------------------------------------------------------
# The server


class Proc:
    """One program the agent started (or found in the state dir after a restart)."""

    __slots__ = ("adopted", "legacy_dir", "mode", "popen", "proc_id", "record", "start_ticks")

    def __init__(self, proc_id: str, record: dict[str, Any], mode: str) -> None:
        self.proc_id = proc_id
        self.record = record
        self.mode = mode  # combined | split
        self.popen: subprocess.Popen | None = None  # type: ignore[type-arg]
        self.start_ticks: int | None = None  # /proc start time: tells a reused pid apart
        # A process a previous agent started: we cannot wait() for it, only poll.
        self.adopted = False
        # runs/<proc_id>/ of an agent from before the journal: its files say it all.
        self.legacy_dir: str | None = None

    @property
    def running(self) -> bool:
        return self.record["state"] == "running"


class Conn:
    __slots__ = ("closing", "inbuf", "outbuf", "sock", "writing")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.writing = False
        self.closing = False  # the client sent EOF: drop it once its replies are out


class Server:
    """The single-threaded supervisor loop: a selector, SIGCHLD via a wakeup pipe."""

    def __init__(self, state_dir: str, idle_timeout: float) -> None:
        self.state_dir = state_dir
        # Absolute: the reserve thread makes files here while the loop is in a program's cwd.
        self.runs_dir = os.path.join(os.path.abspath(state_dir), RUNS_DIR)
        self.idle_timeout = idle_timeout
        self.procs: dict[str, Proc] = {}
        self.by_pid: dict[int, Proc] = {}  # our running children
        self.adopted: dict[str, Proc] = {}  # running, started by an earlier agent
        # Our children that exited while others of their group live on: their status
        # is kept until the group is gone (or killed by the stop's SIGKILL).
        self.lingering: dict[str, tuple[Proc, dict[str, Any]]] = {}
        self.conns: dict[socket.socket, Conn] = {}
        self._unflushed: set[Conn] = set()  # queued output not yet tried on the socket
        self.sel = selectors.DefaultSelector()
        self.version = source_version(_own_source())
        self.idle_since: float | None = time.monotonic()
        self.listener: socket.socket | None = None
        self._lock_fd = -1
        self._journal_fd = -1
        self._journal_lines = 0
        self._journal_torn = False  # the journal's last line is unfinished
        # Started since the journal last got their pids (see `_journal_pids`).
        self._pids_pending: list[Proc] = []
        # Empty spool files for starts to rename into place (`_open_spool`): cleaned ones
        # on the right, taken first; those the reserve thread makes on the left.
        self._spares: collections.deque[str] = collections.deque()
        self._spares_low = threading.Event()  # wakes the reserve thread
        self._spare_ids = itertools.count()
        self._spare_prefix = f"{SPARE_PREFIX}{os.getpid()}."  # unique to this server
        # The agent's environment is that of the `connect` that started it, for good.
        self.base_env = dict(os.environ)
        self._devnull = -1
        self._home_fd = -1  # our cwd (the state dir once bound), to come back to after a spawn
        self.home = os.path.expanduser("~")  # where a program without a cwd starts

    # -- start-up -----------------------------------------------------------------

    def acquire(self) -> bool:
        """Hold the server lock for our lifetime; False if another server holds it."""
        os.makedirs(self.runs_dir, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(self.state_dir, SERVER_LOCK), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, b"%d\n" % os.getpid())
        self._lock_fd = fd
        return True

    def bind(self) -> None:
        # A relative path from inside the state dir: unix socket paths are limited to
        # ~100 bytes, and state dirs (pytest's tmp_path, home dirs) can be longer.
        os.chdir(self.state_dir)
        try:
            os.unlink(SOCKET_NAME)  # stale: we hold the server lock
        except FileNotFoundError:
            pass
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(SOCKET_NAME)
        os.chmod(SOCKET_NAME, 0o600)
        listener.listen(128)
        listener.setblocking(False)
        self.listener = listener
        self.sel.register(listener, selectors.EVENT_READ, "listen")

    def load(self) -> None:
        """Rebuild the table of processes from the journal (and older agents' run dirs)."""
        journal = os.path.join(self.state_dir, JOURNAL_NAME)
        table, self._journal_lines, self._journal_torn = _read_journal(journal)
        self._journal_fd = os.open(journal, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        for proc_id, st in table.items():
            mode = st.get("outputs")
            if mode not in OUTPUT_NAMES:
                mode = "combined"
            proc = Proc(proc_id, self._new_record(proc_id, st, self._spools(proc_id, mode)), mode)
            proc.start_ticks = st.get("start_ticks")
            self.procs[proc_id] = proc
            state = st.get("state")
            if state in FINISHED_STATES:
                proc.record.update(
                    {k: st.get(k) for k in ("state", "end_time", "exit_code", "signal", "message")}
                )
            elif state == "running" and isinstance(st.get("pid"), int):
                self._adopt_or_lose(proc)
            else:
                # The intent is journaled before the spawn, the pid after it.
                self._finish(proc, "error", message=STARTING_MESSAGE, notify=False)
        with os.scandir(self.runs_dir) as entries:
            for entry in sorted(entries, key=lambda e: e.name):
                if entry.is_dir(follow_symlinks=False):
                    if _valid_proc_id(entry.name) and entry.name not in self.procs:
                        self._load_legacy(entry.name, entry.path)
                    continue
                base, dot, suffix = entry.name.rpartition(".")
                if entry.name.startswith(SPARE_PREFIX) and len(self._spares) < MAX_SPARES:
                    self._spares.append(entry.path)  # kept empty for new spools
                elif entry.name.startswith(SPARE_PREFIX) or (
                        dot and suffix in SPOOL_SUFFIXES and base not in table):
                    # Spools are opened before the intent is journaled: nothing ran.
                    try:
                        os.unlink(entry.path)
                    except OSError:
                        pass
        self._maybe_compact()

    def _load_legacy(self, proc_id: str, run_dir: str) -> None:
        """A run dir of an agent from before the journal: spec, pid and status files."""
        spec = _read_json(os.path.join(run_dir, "spec.json"))
        if not isinstance(spec, dict):
            # The spec is written before the spawn: without one, nothing ran.
            shutil.rmtree(run_dir, ignore_errors=True)
            return
        mode = spec.get("outputs")
        if mode not in OUTPUT_NAMES:
            mode = "combined"
        outputs = {n: os.path.join(run_dir, n) for n in OUTPUT_NAMES[mode]}
        proc = Proc(proc_id, self._new_record(proc_id, spec, outputs), mode)
        proc.legacy_dir = run_dir
        self.procs[proc_id] = proc
        status = _read_json(os.path.join(run_dir, "status.json"))
        if isinstance(status, dict):
            proc.record.update(status)
            return
        pid_info = _read_json(os.path.join(run_dir, "pid.json"))
        if not isinstance(pid_info, dict) or not isinstance(pid_info.get("pid"), int):
            self._finish(proc, "error", message=STARTING_MESSAGE, notify=False)
            return
        proc.record["pid"] = pid_info["pid"]
        proc.start_ticks = pid_info.get("start_ticks")
        self._adopt_or_lose(proc)

    def _adopt_or_lose(self, proc: Proc) -> None:
        pid = proc.record["pid"]
        if _pid_alive(pid, proc.start_ticks) or _group_alive(pid):
            proc.adopted = True
            self.adopted[proc.proc_id] = proc
            _log(f"adopted running {proc.proc_id} (pid {pid})")
        else:
            self._finish(proc, "lost", message=self._lost_message(), notify=False)

    @staticmethod
    def _lost_message() -> str:
        return "the agent was restarted while this program ran, so its exit status is unknown"

    def _spools(self, proc_id: str, mode: str) -> dict[str, str]:
        return {n: os.path.join(self.runs_dir, f"{proc_id}.{n}") for n in OUTPUT_NAMES[mode]}

    @staticmethod
    def _new_record(proc_id: str, st: dict[str, Any], outputs: dict[str, str]) -> dict[str, Any]:
        pid = st.get("pid")
        return {
            "proc_id": proc_id,
            "state": "running",
            "pid": pid if isinstance(pid, int) else None,
            "argv": st.get("argv"),
            "cwd": st.get("cwd"),
            "outputs": outputs,
            "start_time": st.get("start_time"),
            "end_time": None,
            "exit_code": None,
            "signal": None,
            "message": None,
        }

    # -- the journal --------------------------------------------------------------

    def _journal(self, proc_id: str, fields: dict[str, Any]) -> None:
        """Append one line: a single write, complete or (cut short) skipped on replay.
        Pending pid lines go first: replay merges a process's lines in order."""
        self._journal_pids()
        self._append_journal([_journal_line(proc_id, fields)])

    def _append_journal(self, lines: list[bytes]) -> None:
        """One write of whole lines; a line cut short is skipped on replay."""
        data = b"".join(lines)
        if self._journal_torn:
            data = b"\n" + data
        try:
            written = os.write(self._journal_fd, data)
        except OSError:
            self._journal_torn = True  # whatever got there, the next line starts afresh
            raise
        if written < len(data):
            self._journal_torn = True
            raise OSError(f"short write to {JOURNAL_NAME} ({written} of {len(data)} bytes)")
        self._journal_torn = False
        self._journal_lines += len(lines)

    def _journal_pids(self) -> None:
        """The pids (and start times) of the programs started since the last call, in one
        write. A burst of starts spawns first and records after: reading a child's start
        time from /proc waits for its exec to finish, which by then it has. It runs
        before any reply is sent and before anything else is journaled or reaped, so a
        reply never names a pid the journal lacks, and a start time is never read from
        a pid that was reaped (and may be reused)."""
        started, self._pids_pending = self._pids_pending, []
        if not started:
            return
        lines = []
        for proc in started:
            pid = proc.record["pid"]
            proc.start_ticks = _proc_start_ticks(pid)
            lines.append(_journal_line(proc.proc_id, {"state": "running", "pid": pid,
                                                      "start_ticks": proc.start_ticks}))
        try:
            self._append_journal(lines)
        except OSError as exc:  # they run and we wait for them; only a restart would lose them
            _log(f"cannot record the pids of {len(started)} programs: {exc}")

    def _journal_state(self, proc: Proc) -> dict[str, Any]:
        rec = proc.record
        st = {k: rec[k] for k in ("argv", "cwd", "start_time", "state", "pid")}
        st["outputs"] = proc.mode
        st["start_ticks"] = proc.start_ticks
        if rec["state"] in FINISHED_STATES:
            st.update({k: rec[k] for k in ("end_time", "exit_code", "signal", "message")})
        return st

    def _maybe_compact(self) -> None:
        """Rewrite the journal as one line per process once cleaned runs dominate it."""
        if self._journal_lines < max(COMPACT_MIN_LINES, 4 * len(self.procs)):
            return
        path = os.path.join(self.state_dir, JOURNAL_NAME)
        tmp = f"{path}.tmp{os.getpid()}"
        data = b"".join(
            COMPACT_JSON.encode({"id": p.proc_id, **self._journal_state(p)}).encode()
            + b"\n"
            for p in self.procs.values()
            if p.legacy_dir is None
        )
        fd = -1
        try:
            # Appends go on through this fd, which follows the file across the rename.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)  # the whole table is at stake here, not one line
            os.replace(tmp, path)
        except OSError as exc:
            _log(f"cannot compact {JOURNAL_NAME}: {exc}")
            if fd >= 0:
                os.close(fd)
            try:
                os.unlink(tmp)
            except OSError:
                pass
            self._journal_lines -= COMPACT_MIN_LINES // 2  # try again later
            return
        os.close(self._journal_fd)
        self._journal_fd = fd
        self._journal_lines = data.count(b"\n")
        self._journal_torn = False

    # -- the loop -----------------------------------------------------------------

    def run(self) -> None:
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        # A Python-level handler (not SIG_IGN, which would leave no status to wait for,
        # and would be inherited by programs); the wakeup pipe does the real work.
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        signal.signal(signal.SIGTERM, self._on_term)
        _become_subreaper()
        threading.Thread(target=self._keep_reserve, name="spares", daemon=True).start()
        self._spares_low.set()
        self.sel.register(wake_r, selectors.EVENT_READ, "wake")
        _log(f"listening in {self.state_dir} (version {self.version})")
        next_poll = time.monotonic()
        while True:
            self._flush_all()
            timeout = self._timeout(next_poll)
            for key, mask in self.sel.select(timeout):
                if key.data == "listen":
                    self._accept()
                elif key.data == "wake":
                    try:
                        while os.read(wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                else:
                    conn = key.data
                    if mask & selectors.EVENT_READ:
                        self._on_readable(conn)
                    if mask & selectors.EVENT_WRITE and conn.sock in self.conns:
                        self._flush(conn)
            try:
                self._reap()
                self._poll_lingering()
                if time.monotonic() >= next_poll:
                    self._poll_adopted()
                    next_poll = time.monotonic() + ADOPTED_POLL_S
            except Exception as exc:  # noqa: BLE001 - a bug must not end the supervisor
                _log(f"error in the loop: {exc!r}")
            self._update_idle()
            if self._idle_expired() and self._try_exit():
                return

    def _on_term(self, signum: int, frame: Any) -> None:
        _log("SIGTERM: exiting; running programs carry on and are adopted on restart")
        self._journal_pids()  # adopted by pid, so the pid must be there
        self._remove_socket()
        os._exit(0)

    def _timeout(self, next_poll: float) -> float | None:
        waits: list[float] = []
        if self.adopted:
            waits.append(max(0.0, next_poll - time.monotonic()))
        if self.lingering:
            waits.append(GROUP_POLL_S)
        if self.idle_since is not None:
            waits.append(max(0.05, self.idle_since + self.idle_timeout - time.monotonic()))
        return min(waits) if waits else None

    def _update_idle(self) -> None:
        if self.conns or self.by_pid or self.adopted or self.lingering:
            self.idle_since = None
        elif self.idle_since is None:
            self.idle_since = time.monotonic()

    def _idle_expired(self) -> bool:
        return (
            self.idle_since is not None and time.monotonic() - self.idle_since >= self.idle_timeout
        )

    def _try_exit(self) -> bool:
        """Exit unless a `connect` is starting up: it holds the connect lock meanwhile.

        A connect takes the lock, then connects; so once we hold the lock, any client
        that got through is already in the accept queue, and we serve it instead.
        """
        fd = os.open(CONNECT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            self.idle_since = time.monotonic() - self.idle_timeout + 0.1
            return False
        if self._accept():
            os.close(fd)  # releases the lock
            self._update_idle()
            return False
        self._remove_socket()
        _log(f"idle for {self.idle_timeout:g}s: exiting")
        return True  # the lock goes with the process

    def _remove_socket(self) -> None:
        try:
            if self.listener is not None:
                self.listener.close()
            os.unlink(os.path.join(self.state_dir, SOCKET_NAME))
        except OSError:
            pass

    # -- connections --------------------------------------------------------------

    def _accept(self) -> bool:
        assert self.listener is not None
        accepted = False
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return accepted
            except OSError as exc:
                _log(f"accept failed: {exc}")
                return accepted
            accepted = True
            sock.setblocking(False)
            conn = Conn(sock)
            self.conns[sock] = conn
            self.sel.register(sock, selectors.EVENT_READ, conn)
            self._send(
                conn,
                {
                    "event": "hello",
                    "protocol": PROTOCOL,
                    "version": self.version,
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                    "state_dir": self.state_dir,
                    "python": ".".join(map(str, sys.version_info[:3])),
                },
            )
            # Exits are delivered at least once until `clean`: a client that was away
            # gets every finished process again on connect.
            for proc in self.procs.values():
                if not proc.running:
                    self._send(conn, self._event(proc))

    def _drop(self, conn: Conn) -> None:
        if self.conns.pop(conn.sock, None) is None:
            return
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def _on_readable(self, conn: Conn) -> None:
        try:
            data = conn.sock.recv(256 * 1024)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            conn.closing = True
            if not conn.outbuf:
                self._drop(conn)
            else:
                self.sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
            return
        conn.inbuf += data
        # Replies go out in one send per turn, but no later than FLUSH_S into a batch.
        flush_at = time.monotonic() + FLUSH_S
        while conn.sock in self.conns:
            nl = conn.inbuf.find(b"\n")
            if nl < 0:
                if len(conn.inbuf) > MAX_LINE:
                    self._send(
                        conn,
                        {
                            "id": None,
                            "ok": False,
                            "code": "bad_request",
                            "error": "request line too long",
                        },
                    )
                    self._drop(conn)
                return
            line = bytes(conn.inbuf[:nl])
            del conn.inbuf[: nl + 1]
            if line.strip():
                self._send(conn, self._handle_line(line))
                if time.monotonic() >= flush_at:
                    self._reap_now()
                    self._flush_all()
                    flush_at = time.monotonic() + FLUSH_S

    def _reap_now(self) -> None:
        """Exits, during a long batch of requests: the clients finish runs while a burst
        of starts goes on. A bug there must not end the supervisor."""
        try:
            self._reap()
        except Exception as exc:  # noqa: BLE001
            _log(f"error reaping: {exc!r}")

    def _send(self, conn: Conn, msg: dict[str, Any]) -> None:
        """Queue a message; the loop sends what queued up once per turn, in one go."""
        conn.outbuf += COMPACT_JSON.encode(msg).encode() + b"\n"
        if len(conn.outbuf) > MAX_OUTBUF:
            _log("dropping a client that does not read")
            self._drop(conn)
            return
        if not conn.writing:
            self._unflushed.add(conn)

    def _flush_all(self) -> None:
        while self._unflushed:
            conn = self._unflushed.pop()
            if conn.sock in self.conns:
                self._flush(conn)

    def _flush(self, conn: Conn) -> None:
        self._journal_pids()
        try:
            while conn.outbuf:
                sent = conn.sock.send(conn.outbuf)
                del conn.outbuf[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._drop(conn)
            return
        if conn.closing:
            if not conn.outbuf:
                self._drop(conn)
            return
        want = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.outbuf else 0)
        if conn.writing != bool(conn.outbuf):
            conn.writing = bool(conn.outbuf)
            self.sel.modify(conn.sock, want, conn)

    def _broadcast(self, msg: dict[str, Any]) -> None:
        for conn in list(self.conns.values()):
            self._send(conn, msg)

    # -- requests -----------------------------------------------------------------

    def _handle_line(self, line: bytes) -> dict[str, Any]:
        req_id = None
        try:
            try:
                req = json.loads(line.decode())
            except ValueError as exc:
                raise RequestError("bad_request", f"bad JSON: {exc}") from None
            if not isinstance(req, dict):
                raise RequestError("bad_request", "a request is a JSON object")
            req_id = req.get("id")
            op = req.get("op")
            handler = self.OPS.get(op) if isinstance(op, str) else None
            if handler is None:
                raise RequestError("bad_request", f"unknown op: {op!r}")
            reply = handler(self, req)
            reply["id"] = req_id
            reply["ok"] = True
            return reply
        except RequestError as exc:
            reply = {"id": req_id, "ok": False, "code": exc.code, "error": exc.message}
            reply.update(exc.extra)
            return reply
        except Exception as exc:  # noqa: BLE001 - a bug must not end the supervisor
            _log(f"error handling {line[:200]!r}: {exc!r}")
            return {"id": req_id, "ok": False, "code": "internal", "error": repr(exc)}

    def _get(self, req: dict[str, Any]) -> Proc:
        proc_id = req.get("proc_id")
        proc = self.procs.get(proc_id) if isinstance(proc_id, str) else None
        if proc is None:
            raise RequestError("not_found", f"no such process: {proc_id!r}")
        return proc

    def op_ping(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "time": _now()}

    def op_start(self, req: dict[str, Any]) -> dict[str, Any]:
        proc_id = req.get("proc_id")
        if proc_id is None:
            proc_id = f"p{int(time.time())}-{secrets.token_hex(4)}"
        if not _valid_proc_id(proc_id):
            raise RequestError("bad_request", f"bad proc_id: {proc_id!r}")
        argv = req.get("argv")
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise RequestError("bad_request", "argv must be a non-empty list of strings")
        env = req.get("env") or {}
        if not isinstance(env, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in env.items()
        ):
            raise RequestError("bad_request", "env must map strings to strings")
        cwd = req.get("cwd")
        if cwd is not None and not isinstance(cwd, str):
            raise RequestError("bad_request", "cwd must be a string")
        inherit_env = req.get("inherit_env", True)
        if not isinstance(inherit_env, bool):
            raise RequestError("bad_request", "inherit_env must be true or false")
        outputs = req.get("outputs", "combined")
        if outputs not in OUTPUT_NAMES:
            raise RequestError("bad_request", "outputs must be 'combined' or 'split'")
        # Our own cwd is the state dir; a program without one starts at home, as ssh does.
        cwd = os.path.expanduser(cwd) if cwd else self.home

        if proc_id in self.procs:
            # Never start twice: a daemon retrying after a crash learns what happened.
            # The table holds every id not cleaned, replayed from the journal on restart.
            raise RequestError(
                "exists", f"process {proc_id} already exists", proc=self.procs[proc_id].record
            )
        intent = {"argv": argv, "cwd": cwd, "start_time": _now()}
        spools = self._spools(proc_id, outputs)
        record = self._new_record(proc_id, intent, spools)
        intent["outputs"] = outputs
        intent["state"] = "starting"
        fds: list[int] = []
        try:
            for path in spools.values():
                fds.append(self._open_spool(path))
            # The intent goes in before the spawn: a restarted agent that finds it without
            # a pid reports the program may or may not have run, and never runs it again.
            # (A new process: no pid line of its own is pending, others' may stay so.)
            self._append_journal([_journal_line(proc_id, intent)])
        except OSError as exc:
            # Nothing ran: leave no trace, so a retry with the same id may start it.
            for fd in fds:
                os.close(fd)
            for path in spools.values():
                try:
                    os.unlink(path)
                except OSError:
                    pass
            raise RequestError("spawn_failed", f"cannot prepare {proc_id}: {exc}") from None
        proc = Proc(proc_id, record, outputs)
        self.procs[proc_id] = proc
        # The agent's own environment is the one of the `connect` that started it, which
        # may be stale by now: a daemon that wants its current one sends it whole.
        full_env = dict(self.base_env) if inherit_env else {}
        full_env.update(env)
        try:
            pid = self._spawn(proc, argv, full_env, cwd, fds)
        except RequestError as exc:
            self._finish(proc, "error", message=exc.message, notify=False)
            exc.extra["proc"] = proc.record
            raise
        finally:
            for fd in fds:
                os.close(fd)
        proc.record["pid"] = pid
        self.by_pid[pid] = proc
        self._pids_pending.append(proc)  # journaled before this reply goes out
        return {"proc": proc.record}

    def _spawn(self, proc: Proc, argv: list[str], env: dict[str, str], cwd: str,
               fds: list[int]) -> int:
        """Start the program in its own session, stdin /dev/null, output on `fds`; its pid.

        posix_spawn (a vfork and an exec, where Popen runs many Python steps and
        syscalls around its own) from `cwd`, which posix_spawn cannot take: the server's
        loop steps into it and straight back (its reserve thread uses absolute paths). Every descriptor the server
        opens is close-on-exec, so the program gets none but its three. Popen where
        posix_spawn cannot start a session.
        """
        if _POSIX_SPAWN:
            if self._home_fd < 0:
                self._home_fd = os.open(".", os.O_RDONLY)
            try:
                os.chdir(cwd)
            except OSError as exc:
                raise RequestError("spawn_failed", f"cwd {cwd}: {exc.strerror or exc}") from None
            try:
                return os.posix_spawn(
                    _find_program(argv[0], env), argv, env,
                    file_actions=[(os.POSIX_SPAWN_DUP2, self._stdin(), 0),
                                  (os.POSIX_SPAWN_DUP2, fds[0], 1),
                                  (os.POSIX_SPAWN_DUP2, fds[-1], 2)],
                    setsid=True, setsigdef=_RESET_SIGNALS)
            except NotImplementedError:  # no POSIX_SPAWN_SETSID here
                _use_popen()
            except OSError as exc:
                what = exc.filename if exc.filename is not None else argv[0]
                raise RequestError("spawn_failed", f"{what}: {exc.strerror or exc}") from None
            finally:
                os.fchdir(self._home_fd)
        if not os.path.isdir(cwd):
            raise RequestError("spawn_failed", f"cwd {cwd}: no such directory")
        try:
            popen = subprocess.Popen(
                argv,
                stdin=self._stdin(),
                stdout=fds[0],
                stderr=fds[1] if len(fds) > 1 else subprocess.STDOUT,
                cwd=cwd,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            what = exc.filename if exc.filename is not None else argv[0]
            raise RequestError("spawn_failed", f"{what}: {exc.strerror or exc}") from None
        proc.popen = popen
        return popen.pid

    def _stdin(self) -> int:
        """/dev/null, opened once (non-inheritable: the spawn dups it onto the child's 0)."""
        if self._devnull < 0:
            self._devnull = os.open(os.devnull, os.O_RDONLY)
        return self._devnull

    def _open_spool(self, path: str) -> int:
        """A new spool file: a spare renamed into place if there is one. Creating a file
        is what a start costs most on a busy disk (the inode's allocation); a rename
        next to nothing."""
        while self._spares:
            try:
                os.rename(self._spares.pop(), path)
                break
            except OSError:  # gone (removed by hand): the next, or a new file
                continue
        if len(self._spares) < SPARE_RESERVE and not self._spares_low.is_set():
            self._spares_low.set()
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC
        return os.open(path, flags, 0o600)

    def _new_spare(self) -> str:
        return os.path.join(self.runs_dir, f"{self._spare_prefix}{next(self._spare_ids)}")

    def _keep_reserve(self) -> None:
        """The reserve thread: makes spares until there are SPARE_RESERVE, each time a
        start takes them below. Its system calls run without the GIL, beside the loop;
        a file it had made when the server exited is a spare for the next server."""
        if hasattr(signal, "pthread_sigmask"):  # signals are the loop's business
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD, signal.SIGTERM})
        while True:
            self._spares_low.wait()
            self._spares_low.clear()
            while len(self._spares) < SPARE_RESERVE:
                path = self._new_spare()
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600))
                except OSError as exc:  # a full disk: a start makes its own file, or says why
                    _log(f"cannot make a spare spool file: {exc}")
                    break
                self._spares.appendleft(path)

    def _recycle(self, path: str) -> bool:
        """Keep a cleaned spool as a spare if it is empty and nobody else has it open
        (a write lease is refused then): a grandchild still writing to it, or a reader,
        would otherwise see a later run's output. Linux only; elsewhere it is deleted."""
        if not hasattr(fcntl, "F_SETLEASE") or len(self._spares) >= MAX_SPARES:
            return False
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            return False
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)  # held until the close below
            if os.fstat(fd).st_size:
                return False  # emptying it would cost as much as a new file
            spare = self._new_spare()
            os.rename(path, spare)
        except OSError:
            return False
        finally:
            os.close(fd)
        self._spares.append(spare)
        return True

    def op_signal(self, req: dict[str, Any]) -> dict[str, Any]:
        proc = self._get(req)
        signum = _parse_signal(req.get("signal", "SIGTERM"))
        if not proc.running or proc.record["pid"] is None:
            raise RequestError(
                "not_running", f"process {proc.proc_id} is not running", proc=proc.record
            )
        pid = proc.record["pid"]
        try:
            if req.get("group", True):
                os.killpg(pid, signum)  # the program is a session and group leader
            else:
                os.kill(pid, signum)
        except ProcessLookupError:
            raise RequestError(
                "not_running", f"process {proc.proc_id} is not running", proc=proc.record
            ) from None
        except OSError as exc:
            raise RequestError("signal_failed", f"kill: {exc.strerror}") from None
        return {}

    def op_status(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"proc": self._get(req).record}

    def op_list(self, req: dict[str, Any]) -> dict[str, Any]:
        return {"procs": [p.record for p in self.procs.values()]}

    def op_read(self, req: dict[str, Any]) -> dict[str, Any]:
        proc = self._get(req)
        name = req.get("output", "output")
        path = proc.record["outputs"].get(name)
        if path is None:
            raise RequestError(
                "bad_request",
                "process {} has no output {!r}; it has {}".format(
                    proc.proc_id, name, ", ".join(proc.record["outputs"])
                ),
            )
        offset = req.get("offset", 0)
        max_bytes = req.get("max_bytes", MAX_READ)
        if not isinstance(offset, int) or offset < 0:
            raise RequestError("bad_request", "offset must be a non-negative integer")
        if not isinstance(max_bytes, int) or max_bytes < 0:
            raise RequestError("bad_request", "max_bytes must be a non-negative integer")
        # Whether the process had ended before we look at the file: then `length` is final.
        final = not proc.running
        try:
            with open(path, "rb") as f:
                length = os.fstat(f.fileno()).st_size
                f.seek(offset)
                data = f.read(min(max_bytes, MAX_READ))
        except FileNotFoundError:
            length, data = 0, b""
        return {
            "data": base64.b64encode(data).decode(),
            "offset": offset,
            "length": length,
            "final": final,
        }

    def op_clean(self, req: dict[str, Any]) -> dict[str, Any]:
        self._clean([self._cleanable(req.get("proc_id"))])
        return {}

    def op_clean_many(self, req: dict[str, Any]) -> dict[str, Any]:
        """`clean` of each of `proc_ids` (a burst of runs ends together), in one journal
        write; the ids that could not be cleaned are in `errors`, with code and message."""
        proc_ids = req.get("proc_ids")
        if not isinstance(proc_ids, list):
            raise RequestError("bad_request", "proc_ids must be a list")
        procs: dict[str, Proc] = {}
        errors: dict[str, dict[str, str]] = {}
        for proc_id in proc_ids:
            try:
                proc = self._cleanable(proc_id)
            except RequestError as exc:
                errors[str(proc_id)] = {"code": exc.code, "error": exc.message}
                continue
            procs[proc.proc_id] = proc
        self._clean(list(procs.values()))
        return {"errors": errors}

    def _cleanable(self, proc_id: Any) -> Proc:
        proc = self._get({"proc_id": proc_id})
        if proc.running:
            raise RequestError("running", f"process {proc.proc_id} is still running")
        return proc

    def _clean(self, procs: list[Proc]) -> None:
        """Deletes (or keeps as spares) the spools of finished processes and forgets them."""
        lines = []
        for proc in procs:
            if proc.legacy_dir is not None:
                shutil.rmtree(proc.legacy_dir, ignore_errors=True)
            else:
                for path in proc.record["outputs"].values():
                    if self._recycle(path):
                        continue
                    try:
                        os.unlink(path)
                    except FileNotFoundError:
                        pass
                lines.append(_journal_line(proc.proc_id, {"clean": True}))
            del self.procs[proc.proc_id]
        if lines:
            try:
                self._journal_pids()  # as `_journal`: a process's lines stay in order
                self._append_journal(lines)
            except OSError as exc:  # a restarted agent reports them again; clean is idempotent
                _log(f"cannot record the cleaning of {len(lines)} processes: {exc}")
        self._maybe_compact()

    OPS: ClassVar[dict[str, Callable[[Server, dict[str, Any]], dict[str, Any]]]] = {
        "ping": op_ping,
        "start": op_start,
        "signal": op_signal,
        "status": op_status,
        "list": op_list,
        "read": op_read,
        "clean": op_clean,
        "clean_many": op_clean_many,
    }

    # -- process ends -------------------------------------------------------------

    def _reap(self) -> None:
        self._journal_pids()
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            proc = self.by_pid.pop(pid, None)
            if proc is None:
                continue
            code: int | None = None
            sig: int | None = None
            if os.WIFSIGNALED(status):
                sig = os.WTERMSIG(status)
            else:
                code = os.WEXITSTATUS(status)
            if proc.popen is not None:
                # Tell Popen we reaped it, so it never waits on a pid that may be reused.
                proc.popen.returncode = code if sig is None else -sig
                proc.popen = None
            outcome: dict[str, Any] = {"exit_code": code, "signal": _signal_name(sig)}
            if _group_alive(pid):
                self.lingering[proc.proc_id] = (proc, outcome)
            else:
                self._finish(proc, "exited", **outcome)

    def _poll_lingering(self) -> None:
        for proc, status in list(self.lingering.values()):
            if not _group_alive(proc.record["pid"]):
                del self.lingering[proc.proc_id]
                self._finish(proc, "exited", **status)

    def _poll_adopted(self) -> None:
        for proc in list(self.adopted.values()):
            pid = proc.record["pid"]
            if not _pid_alive(pid, proc.start_ticks) and not _group_alive(pid):
                self._finish(proc, "lost", message=self._lost_message())

    def _finish(self, proc: Proc, state: str, notify: bool = True, **fields: Any) -> None:
        """Record the end in the journal first, then tell the clients."""
        proc.record["state"] = state
        proc.record["end_time"] = _now()
        proc.record.update(fields)
        # Their sizes at the end: the daemon stores an empty output without a look at
        # its file (most are empty). Not journaled: a restarted agent reports none.
        proc.record["lengths"] = {name: _file_size(path)
                                  for name, path in proc.record["outputs"].items()}
        self.adopted.pop(proc.proc_id, None)
        status = {
            k: proc.record[k]
            for k in ("state", "pid", "end_time", "exit_code", "signal", "message")
        }
        try:
            if proc.legacy_dir is not None:
                _write_json_atomic(os.path.join(proc.legacy_dir, "status.json"), status)
            else:
                self._journal(proc.proc_id, status)
        except OSError as exc:  # disk full: still tell the clients, who keep the record
            _log(f"cannot record the end of {proc.proc_id}: {exc}")
        if notify:
            self._broadcast(self._event(proc))

    @staticmethod
    def _event(proc: Proc) -> dict[str, Any]:
        event = dict(proc.record)
        event["event"] = "exited"
        return event


def _no_inherited_fds() -> None:
    """Descriptors the server inherited past stdio stay out of its programs: posix_spawn,
    unlike Popen, closes none (those the server opens itself are close-on-exec)."""
    try:
        fds = [int(name) for name in os.listdir("/dev/fd")]
    except (OSError, ValueError):
        return
    for fd in fds:
        if fd > 2:
            try:
                os.set_inheritable(fd, False)
            except OSError:  # the listing's own descriptor, closed by now
                pass


def serve(state_dir: str, idle_timeout: float, ready_fd: int = -1) -> int:
    _no_inherited_fds()
    server = Server(state_dir, idle_timeout)
    if not server.acquire():
        _log(f"another agent serves {state_dir}")
        if ready_fd >= 0:
            os.write(ready_fd, b"1")  # the connect will find that one
        return 0
    server.bind()
    server.load()
    if ready_fd >= 0:
        os.write(ready_fd, b"1")
        os.close(ready_fd)
    server.run()
    return 0


def serve_detached(state_dir: str, idle_timeout: float) -> int:
    """Fork a server in a new session; return once it listens (or failed)."""
    log_path = os.path.join(state_dir, LOG_NAME)
    try:
        if os.path.getsize(log_path) > LOG_ROTATE_BYTES:
            os.replace(log_path, log_path + ".1")
    except OSError:
        pass
    ready_r, ready_w = os.pipe()
    pid = os.fork()
    if pid:
        os.close(ready_w)
        ok = os.read(ready_r, 1) == b"1"
        os._exit(0 if ok else 1)
    os.close(ready_r)
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    log = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(null)
    os.close(log)
    try:
        code = serve(state_dir, idle_timeout, ready_w)
    except BaseException as exc:  # noqa: BLE001 - log why, whatever it is
        _log(f"agent failed: {exc!r}")
        os._exit(1)
    os._exit(code)


# ---------------------------------------------------------------------------------
# connect: ensure a server, then proxy stdio to it


def _try_connect() -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(SOCKET_NAME)
    except OSError:
        sock.close()
        return None
    return sock


def _install_source(state_dir: str) -> str:
    """Keep a copy of our source in the state dir: the server runs from that file."""
    path = os.path.join(state_dir, SOURCE_NAME)
    source = _own_source().encode()
    try:
        with open(path, "rb") as f:
            if f.read() == source:
                return path
    except OSError:
        pass
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(source)
    os.replace(tmp, path)
    return path


def ensure_server(state_dir: str, idle_timeout: float) -> socket.socket:
    """Connect to the server, starting one first if none is alive."""
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    os.chdir(state_dir)
    lock_fd = os.open(CONNECT_LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        # Held across start and connect: at most one server gets started, and an idle
        # server never exits between our connect() and its accept().
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        sock = _try_connect()
        if sock is not None:
            return sock
        source_path = _install_source(state_dir)
        starter = subprocess.run(
            [
                sys.executable,
                source_path,
                "serve",
                "--detach",
                "--state-dir",
                state_dir,
                "--idle-timeout",
                repr(idle_timeout),
            ],
            check=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            close_fds=True,
        )
        if starter.returncode != 0:
            raise SystemExit(
                f"apsis agent: the server failed to start; see {os.path.join(state_dir, LOG_NAME)}"
            )
        deadline = time.monotonic() + 10.0
        while True:
            sock = _try_connect()
            if sock is not None:
                return sock
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"apsis agent: cannot connect to {os.path.join(state_dir, SOCKET_NAME)}"
                )
            time.sleep(0.01)
    finally:
        os.close(lock_fd)


def proxy(sock: socket.socket) -> None:
    """Copy stdin to the socket and the socket to stdout, until either side ends.

    Stdin is read through sys.stdin.buffer because the ssh loader may already have
    buffered the first protocol bytes behind the source it read from there.
    """
    stdin = cast(io.BufferedReader, sys.stdin.buffer)

    def pump_in() -> None:
        try:
            while True:
                data = stdin.read1(65536)
                if not data:
                    break
                sock.sendall(data)
        except (OSError, ValueError):
            pass
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    threading.Thread(target=pump_in, daemon=True).start()
    out = sys.stdout.fileno()
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                break
            view = memoryview(data)
            while view:
                view = view[os.write(out, view) :]
    except OSError:
        pass
    os._exit(0)


# ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="apsis-agent", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("connect", "start the server if needed, then speak the protocol on stdio"),
        ("serve", "run the server in the foreground"),
    ):
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("--state-dir", required=True)
        cmd.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT)
        if name == "serve":
            cmd.add_argument("--detach", action="store_true")
    args = parser.parse_args(argv)
    state_dir = os.path.abspath(os.path.expanduser(args.state_dir))
    if args.command == "connect":
        proxy(ensure_server(state_dir, args.idle_timeout))
        return 0
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    if args.detach:
        return serve_detached(state_dir, args.idle_timeout)
    return serve(state_dir, args.idle_timeout)


if __name__ == "__main__":
    sys.exit(main())

"""`apsisctl serve`: the daemon process that ties store, engine and API together."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvicorn

from .config import Config, parse_bind

log = logging.getLogger("apsis")


def setup_logging(config: Config) -> None:
    fmt = logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    root = logging.getLogger()
    root.handlers.clear()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(fmt)
    root.addHandler(handler)
    if config.log_file:
        file_handler = logging.FileHandler(config.log_file)
        file_handler.setFormatter(fmt)
        root.addHandler(file_handler)
    root.setLevel(getattr(logging, config.log_level.upper(), logging.INFO))
    for noisy in ("uvicorn.access", "aiosqlite", "httpx", "websockets", "watchfiles"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def base_url(config: Config) -> str:
    bind = parse_bind(config.bind)
    if isinstance(bind, str):
        return f"http+unix://{bind}"
    host, port = bind
    scheme = "https" if config.tls_cert else "http"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{host}:{port}"


async def serve(config: Config, *, since: str | None = None) -> int:
    """Runs until SIGTERM/SIGINT or a shutdown request; returns the exit code."""
    from .api import create_app
    from .api.wsutil import SharedFrameProtocol
    from .engine.core import Engine
    from .engine.service import Service
    from .jobs_dir import load_jobs_dir
    from .store import is_database_url, open_store

    # Start-up builds millions of objects that live on (jobs, restored runs): with the
    # collector's defaults it went over them all again and again, a sixth of a restart.
    gc.set_threshold(*GC_THRESHOLDS)
    exposure = config.exposure_warning()
    if exposure:
        log.warning("%s", exposure)
    # On PostgreSQL several daemons may share the database: they elect a leader.
    elect = is_database_url(config.store_target)
    store = await open_store(config.store_target, elect=elect, takeover=config.ha_takeover)
    sock = None
    # Alone on its database, the daemon reads the runs it restores while its jobs are
    # parsed (SQLite reads them with the GIL let go): a day of 100 000 runs took ~1 s.
    unfinished = None if elect else asyncio.ensure_future(store.load_unfinished_runs())
    try:
        try:
            sock = listen(config.bind)
        except OSError as exc:
            raise ListenError(f"cannot listen on {config.bind}: {exc.strerror or exc}"
                              " (is another daemon using it? choose another with --bind)") from None
        jobs_dir = await asyncio.to_thread(load_jobs_dir, config.jobs)
        for diag in jobs_dir.diags.items:
            log.warning("jobs: %s", diag)
        log.info("loaded %d jobs from %s", len(jobs_dir.jobs), config.jobs)
        engine = Engine(config, store, jobs_dir)
    except BaseException:
        # Whatever the error, close the store: its thread would keep the process alive
        # after the traceback (a daemon that neither serves nor exits).
        if sock is not None:
            sock.close()
        if unfinished is not None:
            await asyncio.gather(unfinished, return_exceptions=True)
        await store.close()
        raise
    engine.url = base_url(config)
    stop = engine.shutdown_requested
    try:
        if elect:
            await _elect(engine, store, config, since)
        else:
            await engine.start(since, unfinished=unfinished)
    except BaseException:
        # Close what is open, or its threads keep the process alive after the error.
        try:
            if unfinished is not None:  # (a failure before the restore read them)
                await asyncio.gather(unfinished, return_exceptions=True)
            await engine.stop()
        finally:
            await store.close()
            sock.close()
        raise
    unfinished = None  # the task holds the rows read: 80 MB for a day of 100 000 runs

    settle_gc()
    if engine.planning is not None:  # and again once the first window is all created
        engine.planning.add_done_callback(lambda _: settle_gc())
    app = create_app(Service(engine))
    # No permessage-deflate: it compresses every frame once per client, where the event
    # stream builds a frame once for all its clients (50 clients cost 50 compressions),
    # and SharedFrameProtocol writes that frame's bytes as they are to each.
    kwargs: dict[str, Any] = {"log_config": None, "access_log": False, "ws": SharedFrameProtocol,
                              "ws_per_message_deflate": False,
                              "lifespan": "off", "timeout_graceful_shutdown": 3}
    if config.tls_cert:
        kwargs["ssl_certfile"] = str(config.tls_cert)
        kwargs["ssl_keyfile"] = str(config.tls_key)
    server = _Server(uvicorn.Config(app, **kwargs))

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    watcher = engine.spawn(_watch_jobs(engine, config.jobs), "watch-jobs") if config.watch_jobs else None
    server_task = asyncio.create_task(server.serve(sockets=[sock]))
    stop_task = asyncio.create_task(stop.wait())
    log.info("listening on %s", engine.url)
    done, _ = await asyncio.wait({server_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if server_task in done and server_task.exception() is not None:
        log.error("the API server failed: %s", server_task.exception())
        code = 1
    elif server_task in done and not server.started:
        log.error("could not listen on %s", config.bind)
        code = 1
    log.info("shutting down")
    deadline = ExitDeadline(SHUTDOWN_BOUND)
    engine.stopping = True  # from here on no run starts; due ones are caught up next time
    if watcher:
        watcher.cancel()
    server.should_exit = True
    engine.bus.close_all()
    try:
        await asyncio.wait_for(server_task, 5)
    except (TimeoutError, Exception):
        pass
    await engine.stop()
    await store.close()
    log.info("stopped")
    code = RESTART if engine.restart_requested and code == 0 else code
    deadline.code = code
    return code


# The young generation is collected every 10 000 allocations, not every 700 (CPython).
GC_THRESHOLDS = (10_000, 20, 20)


def settle_gc() -> None:
    """Once started: what start-up built (jobs, modules, restored runs) leaves the
    collector's view, and it runs less often. A 1 000-run burst made three full
    collections that each paused the loop 100-130 ms (the events' lag); now ~10 ms.
    What start-up freed (the restored runs' rows, parsed job files) goes back to the
    system: malloc keeps it otherwise, and a restart holding a day of runs stayed at
    the high-water mark of reading them."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)
    release_free_memory()


def release_free_memory() -> None:
    """glibc's malloc_trim: free heap pages back to the system (elsewhere, nothing)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


SHUTDOWN_BOUND = 10.0  # seconds from "shutting down" to the process's end, whatever hangs


async def _elect(engine: Any, store: Any, config: Config, since: str | None) -> None:
    """Leads if no other daemon on the database does, else serves as a standby."""
    from .engine.leadership import Leadership

    bind = parse_bind(config.bind)
    node = config.ha_node or (socket.gethostname() if isinstance(bind, str)
                              else f"{socket.gethostname()}:{bind[1]}")
    engine.leadership = Leadership(engine, store, node=node, advertise=config.ha_advertise,
                                   takeover=config.ha_takeover)
    await engine.leadership.begin(since)


class ExitDeadline:
    """Ends the process if stopping takes longer than `seconds`.

    A worker thread stuck in a blocking call (an open of a FIFO, a hung network mount)
    would otherwise keep the process, and the database lock with it, until kill -9:
    asyncio.run waits for the default executor's threads, and so does the interpreter.
    The timer's thread is a daemon one, so a normal exit does not wait for it.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.code = 1  # a failure, until serve() has closed everything and knows its code
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True
        self._timer.start()

    def _expire(self) -> None:
        stuck = sorted(t.name for t in threading.enumerate()
                       if t is not threading.current_thread() and t is not threading.main_thread()
                       and not t.daemon)
        log.error("not stopped %gs after the stop request (threads still busy: %s); exiting now",
                  self.seconds, ", ".join(stuck) or "none")
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(self.code)


RESTART = 75  # serve()'s answer to `apsisctl shutdown --restart`: the caller re-executes


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the daemon decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ListenError(OSError):
    """The bind address is taken or not allowed; said before anything runs."""


def listen(bind: str) -> socket.socket:
    """Binds the API's socket up front, so a taken address fails fast and clearly."""
    where = parse_bind(bind)
    if isinstance(where, str):
        path = Path(where)
        if path.is_socket():
            probe = socket.socket(socket.AF_UNIX)
            try:
                probe.connect(str(path))
            except OSError:
                path.unlink()  # a stale socket from a daemon that died
            else:
                probe.close()
                raise OSError(98, "address already in use")
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
    else:
        host, port = where
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP spelled out: asyncio only sets TCP_NODELAY on accepted sockets whose
        # proto says TCP, and without it Nagle + delayed ACK cost ~40 ms per keep-alive request.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


async def _watch_jobs(engine: Any, jobs: Path) -> None:
    """Reloads the jobs directory when files in it change (debounced by watchfiles)."""
    from watchfiles import awatch

    try:
        async for changes in awatch(jobs, debounce=500, recursive=True):
            try:
                # Only the files that changed are parsed again (all, if the config did).
                result = await engine.reload_jobs(paths=[Path(path) for _, path in changes])
                log.info("jobs reloaded: %d added, %d changed, %d removed, %d problem(s)",
                         len(result["added"]), len(result["changed"]), len(result["removed"]),
                         len(result["errors"]))
            except Exception:
                log.exception("reloading jobs failed; the previous jobs stay in effect")
    except FileNotFoundError:
        log.warning("not watching %s: it does not exist", jobs)

"""The exclusive lock that keeps a second daemon off a database."""

from __future__ import annotations

import fcntl
import os
import threading

from apsis.store.errors import StoreLockedError

# (device, inode) of the database files this process holds the lock of.
_held: set[tuple[int, int]] = set()
_held_guard = threading.Lock()


class DatabaseLock:
    """An flock on the database file itself, so that every name of the file (a symlink,
    a hard link, another mount of its directory) meets the same lock.

    flock, not fcntl record locks: those are SQLite's, and they belong to the process,
    while an flock belongs to its open file, so a second open in the same process fails
    too; the kernel drops it when the process dies, even by `kill -9`. The descriptor is
    closed only once SQLite's connections are, because closing any descriptor of a file
    drops the process's fcntl locks on it, SQLite's included; for the same reason a
    second open in this process is refused before it opens anything.
    """

    def __init__(self, db_path: str) -> None:
        self.db_path = db_path
        self._fd: int | None = None
        self._key: tuple[int, int] | None = None

    def acquire(self) -> None:
        real = os.path.realpath(self.db_path)
        with _held_guard:
            try:
                st = os.stat(real)
            except FileNotFoundError:
                pass
            else:
                if (st.st_dev, st.st_ino) in _held:
                    raise StoreLockedError(self.db_path, os.getpid(), real)
            fd = os.open(real, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                st = os.fstat(fd)
            except BlockingIOError:
                pid = _flock_holder(os.fstat(fd))
                os.close(fd)
                raise StoreLockedError(self.db_path, pid, real) from None
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._key = fd, (st.st_dev, st.st_ino)
            _held.add(self._key)

    def release(self) -> None:
        """Unlocks; call it after closing the database's connections."""
        with _held_guard:
            if self._fd is not None and self._key is not None:
                fd, self._fd = self._fd, None
                _held.discard(self._key)
                os.close(fd)  # closing the only descriptor of the open file drops the flock


def lock_holder(db_path: str) -> int | None:
    """The pid of the daemon holding the database's lock, if one does (Linux)."""
    try:
        return _flock_holder(os.stat(os.path.realpath(db_path)))
    except OSError:
        return None


def _flock_holder(st: os.stat_result) -> int | None:
    """The pid holding an flock on the file, from /proc/locks (Linux); None elsewhere."""
    wanted = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as locks:
            for line in locks:
                fields = line.split()
                # "1: FLOCK  ADVISORY  WRITE 4242 fe:00:2147043 0 EOF"
                if len(fields) > 5 and fields[1] == "FLOCK" and fields[5] == wanted:
                    return int(fields[4])
    except (OSError, ValueError):
        return None
    return None

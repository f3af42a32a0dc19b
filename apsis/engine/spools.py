"""The output files of a running process, wherever it runs: one interface.

The agent writes a process's output straight to spool files on the host that runs it.
A local spool is read from the file; a remote one through the agent's `read`, over ssh.
Either way a read is done a block at a time, and a range longer than
`output.max_bytes` comes back as its head and its tail with a line saying how much was
left out between (as stored outputs are capped): memory stays bounded whatever the
range asked for.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ..store.outputs import cut_marker, split_cap
from .ports import OutputStore

if TYPE_CHECKING:
    from ..agent.client import AgentClient
    from .hosts import HostAgents

LOCAL_BLOCK = 256 * 1024
REMOTE_BLOCK = 4 << 20  # the agent's largest read
# Outputs up to this size are stored in the same transaction as the run's end.
SMALL_OUTPUT_BYTES = 256 * 1024
# Up to this size a spool is read and compressed on the event loop: quicker than the
# hop to a thread and back.
INLINE_OUTPUT_BYTES = 4 * 1024


@dataclass
class OutputStream:
    """Bytes [start, start + length) of an output as they are sent: when `cut` is not 0,
    that many bytes in the middle are replaced by a marker line."""

    start: int
    length: int
    cut: int
    chunks: AsyncIterator[bytes]

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self.chunks])


class Reader:
    """Reads one output of a spool at any offset, until closed."""

    async def read(self, offset: int, size: int) -> bytes:
        raise NotImplementedError

    def close(self) -> None:
        pass


class Spool:
    """The outputs of one run's process. `POLL_SECONDS`: how often watching asks for
    their lengths (a stat locally, a request over ssh remotely)."""

    POLL_SECONDS: ClassVar[float] = 0.5
    BLOCK: ClassVar[int] = LOCAL_BLOCK

    def __init__(self, run_id: str, output_ids: list[str]) -> None:
        self.run_id = run_id
        self.output_ids = output_ids

    async def length(self, output_id: str, *, connect: bool = True) -> int | None:
        """The output's size now; None if it cannot be known (or, without `connect`,
        if that would need a new connection)."""
        raise NotImplementedError

    async def reader(self, output_id: str) -> Reader:
        raise NotImplementedError

    async def store(self, store: OutputStore, max_bytes: int, temp_dir: Path,
                    ended: Mapping[str, int | None] | None = None
                    ) -> tuple[list[dict[str, Any]], list[Any]]:
        """Stores the outputs of a process that has ended: big ones now, from the file;
        returns the run's `outputs` and the small ones to go in with its final transition.
        `ended`: their sizes at the end, as the agent saw them; one it saw empty is
        stored so without a look at the file (most are)."""
        raise NotImplementedError

    def stores_at_once(self, ended: Mapping[str, int | None] | None) -> bool:
        """Whether `store` of outputs that ended at these sizes waits for nothing (no
        thread, no host): then a run's end can be written with its `running`."""
        return False

    async def clean(self) -> None:
        """Deletes the spool files, once the outputs are stored."""
        raise NotImplementedError

    async def open(self, output_id: str, start: int, end: int | None,
                   max_bytes: int) -> OutputStream | None:
        """A stream of bytes [start, end) (to the current end if `end` is None), capped
        at `max_bytes`; None if there is no such output."""
        if output_id not in self.output_ids:
            return None
        length = await self.length(output_id)
        if length is None:
            return None
        stop = length if end is None else min(end, length)
        start = min(start, stop)
        cap = split_cap(stop - start, max_bytes)
        if cap is None:
            return OutputStream(start, stop - start, 0, self._chunks(output_id, [(start, stop)], b""))
        head, tail = cap
        cut = stop - start - head - tail
        chunks = self._chunks(output_id, [(start, start + head), (stop - tail, stop)], cut_marker(cut))
        return OutputStream(start, stop - start, cut, chunks)

    async def _chunks(self, output_id: str, ranges: list[tuple[int, int]],
                      marker: bytes) -> AsyncIterator[bytes]:
        # Opened on the first read: a stream never read holds nothing open.
        reader = await self.reader(output_id)
        try:
            for i, (offset, stop) in enumerate(ranges):
                if i:
                    yield marker
                while offset < stop:
                    data = await reader.read(offset, min(self.BLOCK, stop - offset))
                    if not data:
                        break
                    offset += len(data)
                    yield data
        finally:
            reader.close()


class _FileReader(Reader):
    def __init__(self, fd: int) -> None:
        self.fd = fd

    async def read(self, offset: int, size: int) -> bytes:
        return await asyncio.to_thread(os.pread, self.fd, size, offset)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _EmptyReader(Reader):
    async def read(self, offset: int, size: int) -> bytes:
        return b""


class LocalSpool(Spool):
    """Spool files on this host, read directly (the agent cleans them: the daemon's own,
    or, after a takeover, the one of the daemon that started the run)."""

    def __init__(self, run_id: str, paths: dict[str, str],
                 agent: Callable[[], Awaitable[AgentClient]]) -> None:
        super().__init__(run_id, list(paths))
        self.paths = paths
        self.agent = agent

    async def length(self, output_id: str, *, connect: bool = True) -> int | None:
        path = self.paths.get(output_id)
        if path is None:
            return None
        try:
            return os.stat(path).st_size
        except FileNotFoundError:
            return 0  # not created yet, or cleaned: the store has the rest

    async def reader(self, output_id: str) -> Reader:
        # Held open: a stream under way still reads once the file is cleaned.
        try:
            return _FileReader(await asyncio.to_thread(os.open, self.paths[output_id], os.O_RDONLY))
        except FileNotFoundError:
            return _EmptyReader()

    async def store(self, store: OutputStore, max_bytes: int, temp_dir: Path,
                    ended: Mapping[str, int | None] | None = None
                    ) -> tuple[list[dict[str, Any]], list[Any]]:
        outputs, small = [], []
        for output_id, name in self.paths.items():
            # Each system call on the loop lets the writer thread take the GIL, and the
            # loop waits to get it back: none for an output the agent saw empty.
            size = (ended or {}).get(output_id)
            if size != 0:
                try:
                    size = os.stat(name).st_size
                except FileNotFoundError:
                    continue
            if size <= SMALL_OUTPUT_BYTES:
                if size == 0:  # nothing to open
                    prepared = store.prepare_small_output(self.run_id, output_id, b"", max_bytes)
                elif size <= INLINE_OUTPUT_BYTES:  # no thread hop for small ones
                    prepared = _prepare_small(store, self.run_id, output_id, name, max_bytes)
                else:
                    prepared = await asyncio.to_thread(
                        _prepare_small, store, self.run_id, output_id, name, max_bytes)
                small.append(prepared)
                outputs.append({"output_id": output_id, "length": prepared.length})
            else:
                info = await store.store_output_from_file(self.run_id, output_id, Path(name),
                                                          max_bytes=max_bytes)
                outputs.append({"output_id": output_id, "length": info["length"]})
        return outputs, small

    def stores_at_once(self, ended: Mapping[str, int | None] | None) -> bool:
        sizes = [(ended or {}).get(output_id) for output_id in self.output_ids]
        return all(size is not None and size <= INLINE_OUTPUT_BYTES for size in sizes)

    async def clean(self) -> None:
        await (await self.agent()).clean(self.run_id)


class _AgentReader(Reader):
    def __init__(self, agent: AgentClient, run_id: str, output_id: str) -> None:
        self.agent, self.run_id, self.output_id = agent, run_id, output_id

    async def read(self, offset: int, size: int) -> bytes:
        return (await self.agent.read(self.run_id, self.output_id, offset, size)).data


class RemoteSpool(Spool):
    """Spool files on another host, read through its agent a block at a time."""

    POLL_SECONDS = 1.0  # a request over ssh per output, not a stat
    BLOCK = REMOTE_BLOCK

    def __init__(self, run_id: str, output_ids: list[str], hosts: HostAgents, host: str,
                 user: str | None, state_dir: str | None = None) -> None:
        super().__init__(run_id, output_ids)
        self.hosts, self.host, self.user, self.state_dir = hosts, host, user, state_dir

    async def agent(self, *, connect: bool = True) -> AgentClient | None:
        if connect:
            return await self.hosts.get(self.host, self.user, state_dir=self.state_dir)
        agent = self.hosts.connected(self.host, self.user, state_dir=self.state_dir)
        return agent if agent is not None and agent.connected else None

    async def length(self, output_id: str, *, connect: bool = True) -> int | None:
        try:
            agent = await self.agent(connect=connect)
            if agent is None:
                return None
            return (await agent.read(self.run_id, output_id, 0, 0)).length
        except Exception:  # unreachable, or already cleaned: the store answers
            return None

    async def reader(self, output_id: str) -> Reader:
        agent = await self.agent()
        assert agent is not None
        return _AgentReader(agent, self.run_id, output_id)

    async def store(self, store: OutputStore, max_bytes: int, temp_dir: Path,
                    ended: Mapping[str, int | None] | None = None
                    ) -> tuple[list[dict[str, Any]], list[Any]]:
        outputs, small = [], []
        for output_id in self.output_ids:
            if (ended or {}).get(output_id) == 0:  # no round trip over ssh
                prepared = store.prepare_small_output(self.run_id, output_id, b"", max_bytes)
                small.append(prepared)
                outputs.append({"output_id": output_id, "length": 0})
                continue
            length, prepared = await self._store_one(store, output_id, max_bytes, temp_dir)
            if prepared is not None:
                small.append(prepared)
            outputs.append({"output_id": output_id, "length": length})
        return outputs, small

    def stores_at_once(self, ended: Mapping[str, int | None] | None) -> bool:
        return all((ended or {}).get(output_id) == 0 for output_id in self.output_ids)

    async def _store_one(self, store: OutputStore, output_id: str, max_bytes: int,
                         temp_dir: Path) -> tuple[int, Any]:
        """(stored length, small output or None): a small remote spool is read into
        memory to go in with the final transition; a big one is stored now from a local
        temp file, fetched a block at a time.

        The temp file is sparse: over the cap only the head and the tail that the store
        keeps are fetched, so neither memory nor ssh carries the middle of a huge output.
        """
        length = await self.length(output_id)
        if length is None:
            raise RuntimeError(f"cannot read output {output_id!r} of {self.run_id} on {self.host}")
        if length <= SMALL_OUTPUT_BYTES:
            data = await OutputStream(0, length, 0, self._chunks(output_id, [(0, length)], b"")).read()
            prepared = await asyncio.to_thread(store.prepare_small_output, self.run_id, output_id,
                                               data, max_bytes)
            return prepared.length, prepared
        cap = split_cap(length, max_bytes)
        ranges = [(0, length)] if cap is None else [(0, cap[0]), (length - cap[1], length)]
        reader = await self.reader(output_id)
        fd, name = tempfile.mkstemp(prefix=f".apsis-fetch-{self.run_id}-{output_id}-", dir=temp_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "r+b") as file:
                file.truncate(length)
                for offset, end in ranges:
                    while offset < end:
                        data = await reader.read(offset, min(REMOTE_BLOCK, end - offset))
                        if not data:
                            break
                        await asyncio.to_thread(os.pwrite, file.fileno(), data, offset)
                        offset += len(data)
            info = await store.store_output_from_file(self.run_id, output_id, path, max_bytes=max_bytes)
            return info["length"], None
        finally:
            path.unlink(missing_ok=True)

    async def clean(self) -> None:
        agent = await self.agent()
        assert agent is not None
        await agent.clean(self.run_id)


def _prepare_small(store: OutputStore, run_id: str, output_id: str, path: str, max_bytes: int) -> Any:
    """Reads and compresses a small spool file (in a thread unless it is tiny)."""
    with open(path, "rb") as file:
        return store.prepare_small_output(run_id, output_id, file.read(), max_bytes)

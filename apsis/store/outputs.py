"""Output bytes as the store keeps them: capped, chunked and zlib-compressed.

A capped output keeps its head and its tail with a marker line between, because the
start (what ran) and the end (how it failed) are what people read. Chunks are
compressed independently so that a range read decompresses only what it touches.
Everything here is synchronous and meant to run in a worker thread.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

CHUNK_SIZE = 1 << 20
LEVEL = 6
_READ_SIZE = 256 * 1024


def cut_marker(cut: int) -> bytes:
    """The line that stands where `cut` bytes were left out."""
    return f"\n[... apsis: {cut} bytes cut ...]\n".encode()


@dataclass(frozen=True, slots=True)
class Chunk:
    chunk_no: int
    start: int  # offset of the chunk's first byte in the stored output
    length: int  # uncompressed
    data: bytes  # compressed


def split_cap(original_length: int, max_bytes: int | None) -> tuple[int, int] | None:
    """(head, tail) lengths to keep when the output is over the cap, else None."""
    if max_bytes is None or original_length <= max_bytes:
        return None
    max_bytes = max(max_bytes, 0)
    head = max_bytes // 2
    return head, max_bytes - head


def stored_length(original_length: int, max_bytes: int | None) -> int:
    cap = split_cap(original_length, max_bytes)
    if cap is None:
        return original_length
    head, tail = cap
    return head + len(cut_marker(original_length - head - tail)) + tail


def pieces_of_bytes(data: bytes, max_bytes: int | None) -> Iterator[bytes | memoryview]:
    view = memoryview(data)
    cap = split_cap(len(data), max_bytes)
    if cap is None:
        yield view
        return
    head, tail = cap
    yield view[:head]
    yield cut_marker(len(data) - head - tail)
    if tail:
        yield view[len(data) - tail :]


def pieces_of_file(file: BinaryIO, size: int, max_bytes: int | None) -> Iterator[bytes]:
    """Reads only the bytes that are kept, a block at a time."""
    cap = split_cap(size, max_bytes)
    if cap is None:
        yield from _read_range(file, 0, size)
        return
    head, tail = cap
    yield from _read_range(file, 0, head)
    yield cut_marker(size - head - tail)
    yield from _read_range(file, size - tail, tail)


def _read_range(file: BinaryIO, start: int, length: int) -> Iterator[bytes]:
    file.seek(start)
    while length > 0:
        block = file.read(min(_READ_SIZE, length))
        if not block:  # the file shrank under us: keep what there was
            return
        length -= len(block)
        yield block


def compress_chunks(
    pieces: Iterable[bytes | memoryview], chunk_size: int = CHUNK_SIZE
) -> Iterator[Chunk]:
    """Compresses pieces into chunks of exactly `chunk_size` stored bytes (the last may
    be short), each an independent zlib stream. Holds no uncompressed chunk in memory."""
    chunk_no = 0
    start = 0
    filled = 0
    compressor = zlib.compressobj(LEVEL)
    parts: list[bytes] = []
    for piece in pieces:
        view = memoryview(piece)
        while len(view):
            take = min(chunk_size - filled, len(view))
            parts.append(compressor.compress(view[:take]))
            view = view[take:]
            filled += take
            if filled == chunk_size:
                parts.append(compressor.flush())
                yield Chunk(chunk_no, start, filled, b"".join(parts))
                chunk_no += 1
                start += filled
                filled = 0
                compressor = zlib.compressobj(LEVEL)
                parts = []
    if filled:
        parts.append(compressor.flush())
        yield Chunk(chunk_no, start, filled, b"".join(parts))


def file_chunks(path: str | os.PathLike[str], max_bytes: int | None) -> tuple[int, Iterator[Chunk]]:
    """(original length, chunks) of a file; the chunks are read and compressed lazily.

    The length is the file's size now: a file still growing is cut there.
    """
    size = os.stat(path).st_size

    def chunks() -> Iterator[Chunk]:
        with open(path, "rb") as file:
            yield from compress_chunks(pieces_of_file(file, size, max_bytes))

    return size, chunks()


def decompress_range(chunks: list[tuple[int, bytes]], start: int, end: int) -> bytes:
    """Bytes [start, end) of the stored output from its (chunk start, data) rows."""
    parts: list[bytes] = []
    for chunk_start, data in chunks:
        raw = zlib.decompress(data)
        lo = max(start - chunk_start, 0)
        hi = min(end - chunk_start, len(raw))
        if hi > lo:
            parts.append(raw[lo:hi])
    return b"".join(parts)

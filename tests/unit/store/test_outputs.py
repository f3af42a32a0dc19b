"""Outputs: exact bytes, the head-and-tail cap, range reads, bounded memory."""

from __future__ import annotations

import os
import random
import tracemalloc
from pathlib import Path

import pytest

from apsis.store import CHUNK_SIZE, Store, StoreError, cut_marker

from .conftest import make_run

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def with_run(store: Store) -> Store:
    await store.write([make_run("r1")])
    return store


def _noise(n: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


async def test_bytes_round_trip_exactly(with_run: Store) -> None:
    store = with_run
    data = b"\x1b[31mred\x1b[0m \xff\xfe not utf-8 \x00\r\n" + "ünï".encode("latin-1")
    info = await store.store_output_bytes("r1", "output", data)
    assert info == {
        "output_id": "output",
        "length": len(data),
        "original_length": len(data),
        "content_type": "application/octet-stream",
    }
    assert await store.get_output("r1", "output") == data
    assert await store.list_outputs("r1") == [dict(info)]


async def test_cap_keeps_head_and_tail_with_a_marker(with_run: Store) -> None:
    store = with_run
    data = bytes(range(256)) * 40  # 10240 bytes
    info = await store.store_output_bytes("r1", "output", data, 1000)
    expected = data[:500] + cut_marker(len(data) - 1000) + data[-500:]
    assert b"[... apsis: 9240 bytes cut ...]" in expected
    assert await store.get_output("r1", "output") == expected
    assert info["length"] == len(expected) and info["original_length"] == len(data)


async def test_cap_from_file_matches_cap_from_bytes(with_run: Store, tmp_path: Path) -> None:
    store = with_run
    data = _noise(3 * CHUNK_SIZE + 12345)
    path = tmp_path / "out"
    path.write_bytes(data)
    max_bytes = 2 * CHUNK_SIZE + 777  # head and tail do not fall on chunk boundaries
    await store.store_output_from_file("r1", "a", path, max_bytes=max_bytes)
    await store.store_output_bytes("r1", "b", data, max_bytes)
    head = max_bytes // 2
    tail = max_bytes - head
    expected = data[:head] + cut_marker(len(data) - max_bytes) + data[-tail:]
    assert await store.get_output("r1", "a") == expected
    assert await store.get_output("r1", "b") == expected


async def test_output_at_the_cap_is_not_cut(with_run: Store) -> None:
    data = b"x" * 100
    await with_run.store_output_bytes("r1", "output", data, 100)
    assert await with_run.get_output("r1", "output") == data


async def test_range_reads_across_chunk_boundaries(with_run: Store, tmp_path: Path) -> None:
    store = with_run
    data = _noise(2 * CHUNK_SIZE + CHUNK_SIZE // 2, seed=3)
    path = tmp_path / "out"
    path.write_bytes(data)
    await store.store_output_from_file("r1", "output", path, max_bytes=None)
    n = len(data)
    ranges = [
        (0, 10),
        (CHUNK_SIZE - 5, CHUNK_SIZE + 5),
        (CHUNK_SIZE, 2 * CHUNK_SIZE),
        (10, n - 10),
        (n - 3, n),
        (n - 3, n + 100),
        (5, 5),
        (n + 10, n + 20),
        (CHUNK_SIZE - 1, 2 * CHUNK_SIZE + 1),
    ]
    rng = random.Random(9)
    ranges += [tuple(sorted((rng.randrange(n), rng.randrange(n)))) for _ in range(10)]
    for start, end in ranges:
        assert await store.get_output("r1", "output", start, end) == data[start:end], (start, end)
    assert await store.get_output("r1", "output", CHUNK_SIZE * 2) == data[CHUNK_SIZE * 2 :]
    with pytest.raises(ValueError):
        await store.get_output("r1", "output", -1)


async def test_empty_and_missing_outputs(with_run: Store) -> None:
    store = with_run
    info = await store.store_output_bytes("r1", "empty", b"")
    assert info["length"] == 0
    assert await store.get_output("r1", "empty") == b""
    assert await store.get_output("r1", "nope") is None
    assert await store.get_output("r2", "output") is None
    with pytest.raises(StoreError, match="no run r2"):
        await store.store_output_bytes("r2", "output", b"x")


async def test_storing_again_replaces_the_output(with_run: Store, db_path: Path) -> None:
    store = with_run
    await store.store_output_bytes("r1", "output", _noise(CHUNK_SIZE * 2, seed=1))
    await store.store_output_bytes("r1", "output", b"short")
    assert await store.get_output("r1", "output") == b"short"
    assert [o["length"] for o in await store.list_outputs("r1")] == [5]
    assert await store.check() == []  # no chunk of the old version left behind


async def test_file_that_grows_is_read_up_to_its_size_at_start(
    with_run: Store, tmp_path: Path
) -> None:
    path = tmp_path / "out"
    path.write_bytes(b"abc")
    info = await with_run.store_output_from_file("r1", "output", path, max_bytes=None)
    assert info["length"] == 3


def _write_rotations(path: Path, block: bytes, count: int) -> None:
    """`count` rotations of `block`, so that no two chunks are alike."""
    with open(path, "wb") as file:
        file.writelines(block[i:] + block[:i] for i in range(count))


async def test_large_file_is_stored_in_bounded_memory(
    with_run: Store, tmp_path: Path, backend: str
) -> None:
    store = with_run
    # asyncpg copies each chunk into its protocol buffer as it sends it: one chunk more.
    bound = (6 if backend == "sqlite" else 7) * CHUNK_SIZE
    path = tmp_path / "big"
    block = _noise(CHUNK_SIZE, seed=5)
    _write_rotations(path, block, 50)
    size = os.path.getsize(path)

    tracemalloc.start()
    try:
        info = await store.store_output_from_file("r1", "capped", path, max_bytes=CHUNK_SIZE)
        _, peak_capped = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        whole = await store.store_output_from_file("r1", "whole", path, max_bytes=None)
        _, peak_whole = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info["original_length"] == size and info["length"] < CHUNK_SIZE + 100
    assert whole["length"] == size
    assert peak_capped < bound, peak_capped
    assert peak_whole < bound, peak_whole
    tail = await store.get_output("r1", "whole", size - 100)
    assert tail == (block[49:] + block[:49])[-100:]

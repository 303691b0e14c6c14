"""Parts appended on a writer thread: the blocks land in order, and a failure anywhere,
in the caller or in a write, stores no part and leaves no temporary file."""

import errno
from pathlib import Path

import numpy as np
import pytest

from app.jobs import part_files
from app.jobs.part_files import PartLayout, load_part, write_parts
from app.storage.local import LocalBlobStore

LAYOUTS = {0: PartLayout.dense("jobs/j/a.npy", 4), 1: PartLayout.dense("jobs/j/b.npy", 4)}


def _blocks(seed: int, count: int, rows: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(rows, 4)).astype("<f4") for _ in range(count)]


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def test_more_blocks_than_the_queue_holds_land_in_order(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    count = part_files.QUEUED_BLOCKS * 3
    a, b = _blocks(0, count, 100), _blocks(1, count, 7)
    with write_parts(store, LAYOUTS, {0: 100 * count, 1: 7 * count}) as parts:
        for block_a, block_b in zip(a, b, strict=True):
            parts.append(0, data=block_a)
            parts.append(1, data=block_b[:0])  # an empty block is no write
            parts.append(1, data=block_b)
    for key, blocks in (("jobs/j/a.npy", a), ("jobs/j/b.npy", b)):
        part = load_part(store, key)
        expected = np.concatenate(blocks)
        np.testing.assert_array_equal(part.features, expected[:, :-1])
        np.testing.assert_array_equal(part.targets, expected[:, -1])
    assert [p.name for p in _files(tmp_path)] == ["a.npy", "b.npy"]


def test_a_failing_caller_stores_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with (
        pytest.raises(RuntimeError, match="midway"),
        write_parts(store, LAYOUTS, {0: 500, 1: 500}) as parts,
    ):
        for block in _blocks(0, 3, 100):
            parts.append(0, data=block)
        raise RuntimeError("midway")
    assert _files(tmp_path) == []


def test_a_part_short_of_its_rows_stores_nothing(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with (
        pytest.raises(ValueError, match="part 1 got 0 rows, not 5"),
        write_parts(store, LAYOUTS, {0: 100, 1: 5}) as parts,
    ):
        parts.append(0, data=_blocks(0, 1, 100)[0])
    assert _files(tmp_path) == []


def test_a_failed_write_on_the_thread_reaches_the_caller(tmp_path: Path) -> None:
    """The kernel's own full disk: /dev/full answers every write with ENOSPC."""
    store = LocalBlobStore(tmp_path)
    blocks = _blocks(0, part_files.QUEUED_BLOCKS * 2, 4096)
    with (
        Path("/dev/full").open("wb") as full,
        pytest.raises(OSError) as raised,
        write_parts(store, LAYOUTS, {0: 4096 * len(blocks), 1: 0}) as parts,
    ):
        stream = parts.streams[0]["data"]
        stream.handle.close()
        stream.handle = full
        for block in blocks:
            parts.append(0, data=block)
    assert raised.value.errno == errno.ENOSPC
    assert _files(tmp_path) == []

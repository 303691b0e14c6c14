"""Parts written as `.npy` files by appending batches, and read back memory-mapped.

Plain appends, not a memory map: written pages of a map count in the worker's RSS
until the kernel flushes them, so a big dataset would look like a leak. Each file is
written under a temporary name of its own (a re-sent prepare running alongside never
shares one; named after its writer, a killed prepare's files go at the next start-up)
and renamed into place only when every part has all its rows.

The appends run on a thread of their own (a write releases the GIL), so the next
batch is read and transformed while the last one is written; a bounded queue keeps
memory to a few blocks.

A dense part (networks) is one float32 file, features then the encoded target in the
last column. A binned part (trees) is a folder of three: `bins` (uint8), `target`
(float32) and `rows` (int64, each row's index in the dataset, for row sampling).
"""

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from app.storage import BlobStore, keys
from app.storage.in_flight import InFlight

# Blocks handed to the writer thread and not yet written.
QUEUED_BLOCKS = 8
BINNED_ARRAYS = {"bins": "|u1", "target": "<f4", "rows": "<i8"}


class _Stream:
    def __init__(
        self,
        stack: ExitStack,
        tmp: Path,
        descr: str,
        shape: tuple[int, ...],
        writing: InFlight[int | None],
    ):
        self.descr = descr
        self.handle: BinaryIO = stack.enter_context(tmp.open("wb"))
        header = {"descr": descr, "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(self.handle, header)
        self.rows, self.expected = 0, shape[0]
        self._writing = writing

    def append(self, block: np.ndarray) -> None:
        # The array itself is written (no bytes copy); the caller never changes it after.
        data = np.ascontiguousarray(block, dtype=self.descr)
        if data.size:
            self._writing.submit(self.handle.write, data)
        self.rows += len(block)


@dataclass(frozen=True)
class PartLayout:
    """Which file(s) a part's key names, and the dtype and trailing shape of each."""

    files: dict[str, tuple[str, str, tuple[int, ...]]]  # name -> (key, descr, shape[1:])

    @classmethod
    def dense(cls, key: str, width: int) -> "PartLayout":
        return cls({"data": (key, "<f4", (width,))})

    @classmethod
    def binned(cls, key: str, n_features: int) -> "PartLayout":
        shapes = {"bins": (n_features,), "target": (), "rows": ()}
        return cls(
            {
                name: (keys.part_array(key, name), descr, shapes[name])
                for name, descr in BINNED_ARRAYS.items()
            }
        )


class PartWriter:
    """Appends each group's rows to its part's files; `streams[group][name]`."""

    def __init__(self, streams: dict[int, dict[str, _Stream]]) -> None:
        self.streams = streams

    def append(self, group: int, **arrays: np.ndarray) -> None:
        for name, block in arrays.items():
            self.streams[group][name].append(block)


@contextmanager
def write_parts(
    store: BlobStore, layouts: dict[int, PartLayout], counts: dict[int, int]
) -> Iterator[PartWriter]:
    """Every part's files, each stored when the body returns with every part holding
    `counts[group]` rows; otherwise none of them."""
    with ExitStack() as files:
        # Entered first, so they end last: a blob is stored only once every stream
        # below is flushed and closed, and a failure anywhere stores none.
        temporary = {
            (group, name): files.enter_context(store.temporary_path(key))
            for group, layout in layouts.items()
            for name, (key, _descr, _shape) in layout.files.items()
        }
        streams: dict[int, dict[str, _Stream]] = {}
        # One thread: each file's blocks are written in the order they were appended.
        writing: InFlight[int | None] = InFlight(threads=1, limit=QUEUED_BLOCKS, name="parts")
        with ExitStack() as handles:
            for group, layout in layouts.items():
                streams[group] = {
                    name: _Stream(
                        handles, temporary[group, name], descr, (counts[group], *shape), writing
                    )
                    for name, (_key, descr, shape) in layout.files.items()
                }
            # Registered after the files, so it runs before they close, on failure too.
            handles.callback(writing.close)
            yield PartWriter(streams)
            writing.drain()  # the first failed write, if any, raises here
        for group, parts in streams.items():
            for stream in parts.values():
                if stream.rows != stream.expected:
                    raise ValueError(f"part {group} got {stream.rows} rows, not {stream.expected}")


def _load(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError:
        # An empty part has no bytes to map.
        return np.load(path, allow_pickle=False)


@dataclass(frozen=True)
class Part:
    features: np.ndarray
    targets: np.ndarray
    # Each row's index in the dataset; binned parts only.
    rows: np.ndarray | None = None


def load_part(store: BlobStore, key: str) -> Part:
    """A part's features and encoded targets, memory-mapped, never unpickled."""
    if keys.is_binned_part(key):
        arrays = {name: _load(store.path(keys.part_array(key, name))) for name in BINNED_ARRAYS}
        return Part(arrays["bins"], arrays["target"], arrays["rows"])
    data = _load(store.path(key))
    return Part(data[:, :-1], data[:, -1])

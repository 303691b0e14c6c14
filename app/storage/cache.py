"""A bounded local copy of objects that live in remote storage.

Shards, parts and artifacts are read memory-mapped or by libraries that want a file
(pyarrow, numpy, the predictor), so a worker reading from object storage fetches an
object once into this directory and maps it from there. Entries are named by the
object's content hash (the store's ETag), never by its key alone: an object written
again under the same key is another entry, so a stale copy is never read. The least
recently used entries go when the total passes `max_bytes`. Evicting an entry that a
reader has mapped is safe: an unlinked file keeps its bytes until the last mapping
of it is closed.
"""

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from app.storage.temp_files import sweep_temp_files, temp_prefix

_ENTRY_SUFFIX = ".blob"


class LocalCache:
    def __init__(self, root: Path, max_bytes: int) -> None:
        if max_bytes <= 0:
            raise ValueError("the cache needs a positive size")
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        # Left by a process killed while fetching.
        sweep_temp_files(self.root, grace_s=3600)

    def entry(self, key: str, version: str) -> Path:
        """Where the copy of `key` at `version` (its content hash) lives."""
        digest = hashlib.sha256(f"{key}\0{version}".encode()).hexdigest()
        return self.root / digest[:2] / (digest + _ENTRY_SUFFIX)

    def get(self, key: str, version: str, fetch: Callable[[Path], None]) -> Path:
        """The local copy, fetched with `fetch(temporary path)` when absent. Concurrent
        fetches of one entry each write a file of their own and the last rename wins:
        both hold the same bytes."""
        target = self.entry(key, version)
        if target.exists():
            os.utime(target)  # recently used
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name))
        os.close(fd)
        try:
            fetch(Path(name))
            os.replace(name, target)
        finally:
            Path(name).unlink(missing_ok=True)
        self.evict(keep=target)
        return target

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove the least recently used entries until the total fits `max_bytes`;
        `keep` (the entry just fetched) stays even when it alone is larger."""
        with self._lock:
            entries = []
            for path in self.root.glob(f"*/*{_ENTRY_SUFFIX}"):
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                entries.append((stat.st_mtime_ns, stat.st_size, path))
            total = sum(size for _, size, _ in entries)
            removed = []
            for _, size, path in sorted(entries):
                if total <= self.max_bytes:
                    break
                if path == keep:
                    continue
                path.unlink(missing_ok=True)
                total -= size
                removed.append(path)
            return removed

    def used_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob(f"*/*{_ENTRY_SUFFIX}"))

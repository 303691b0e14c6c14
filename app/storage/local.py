"""Blob storage on a local (or shared, mounted) directory.

Keys are relative POSIX paths made by the service, never from user input, so a
file name like ``../../etc/passwd`` can only ever be a label.
"""

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from app.storage.temp_files import TEMP_PREFIX, abandoned, sweep_temp_files, temp_prefix


class BlobWriter:
    """Writes to a temporary file and hashes as it goes; the blob appears only on commit."""

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self.sha256 = hashlib.sha256()
        self.bytes_written = 0

    def write(self, chunk: bytes) -> None:
        self._handle.write(chunk)
        self.sha256.update(chunk)
        self.bytes_written += len(chunk)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        resolved = (self.root / key).resolve()
        if not resolved.is_relative_to(self.root):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return resolved

    def exists(self, key: str) -> bool:
        return self.path(key).exists()

    @contextmanager
    def writer(self, key: str) -> Iterator[BlobWriter]:
        """Atomic write: readers never see a half-written blob, and a failure leaves none."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # Named after its writer, so a start-up sweep can tell a dead writer's debris.
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name))
        try:
            with os.fdopen(fd, "wb") as handle:
                yield BlobWriter(handle)
            os.replace(tmp_name, target)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as out:
            out.write(data)

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    @contextmanager
    def temporary_path(self, key: str) -> Iterator[Path]:
        """A path to fill by a library that writes files itself (pyarrow, numpy)."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        # A name of its own: two redelivered tasks writing the same key never share a file,
        # and a later delivery can tell its killed predecessors' files by their owner.
        fd, name = tempfile.mkstemp(dir=target.parent, prefix=temp_prefix(target.name))
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def delete_prefix(self, prefix: str) -> None:
        target = self.path(prefix)
        if target.is_dir():
            shutil.rmtree(target, ignore_errors=True)
        else:
            target.unlink(missing_ok=True)

    def download_url(self, key: str, *, filename: str) -> str | None:
        return None  # the API streams the file

    def children(self, prefix: str) -> list[str]:
        folder = self.path(prefix)
        return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []

    def last_written(self, prefix: str, *, grace_s: float, now: float) -> float:
        """A temporary file whose writer is dead does not count: an upload killed a
        moment ago leaves only that. An empty folder counts from its own time: another
        process may have made it an instant ago, for a file it is about to create."""
        folder = self.path(prefix)
        try:
            latest = folder.stat().st_mtime
        except FileNotFoundError:
            return now  # removed meanwhile (another process's sweep): nothing to do
        files = live = 0
        for parent, _dirs, names in os.walk(folder):
            for name in names:
                path = Path(parent) / name
                files += 1
                if name.startswith(TEMP_PREFIX) and abandoned(path, grace_s=grace_s, now=now):
                    continue
                try:
                    modified = path.stat().st_mtime
                except FileNotFoundError:
                    continue  # renamed or removed while we looked: it was being written
                live += 1
                latest = modified if live == 1 else max(latest, modified)
        return latest if live or not files else 0.0

    def sweep_temp_files(self, prefix: str = "", *, grace_s: float) -> list[Path]:
        """Remove temporary files under `prefix` that no live process will finish."""
        target = self.path(prefix) if prefix else self.root
        return sweep_temp_files(target, grace_s=grace_s) if target.is_dir() else []

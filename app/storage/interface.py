"""What the service asks of blob storage, whichever backend holds the blobs: a local
or mounted directory (`local.LocalBlobStore`) or an S3-compatible bucket
(`s3.S3BlobStore`). Keys are relative POSIX paths built in `keys.py`."""

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, Protocol


class BlobSink(Protocol):
    """An open blob being written: hashed and counted as it goes."""

    sha256: Any  # hashlib's sha256 object
    bytes_written: int

    def write(self, chunk: bytes) -> None: ...


class BlobStore(Protocol):
    def exists(self, key: str) -> bool: ...

    def path(self, key: str) -> Path:
        """A local file holding the blob's bytes, to read or map (remote stores hand
        out a cached copy). Never written through."""
        ...

    def writer(self, key: str) -> AbstractContextManager[BlobSink]:
        """The blob appears whole when the block ends without error, else not at all."""
        ...

    def put_bytes(self, key: str, data: bytes) -> None: ...

    def read_bytes(self, key: str) -> bytes: ...

    def temporary_path(self, key: str) -> AbstractContextManager[Path]:
        """A local file to fill by a library that writes files itself; it becomes the
        blob when the block ends without error."""
        ...

    def delete(self, key: str) -> None: ...

    def delete_prefix(self, prefix: str) -> None: ...

    def children(self, prefix: str) -> list[str]:
        """The names one level below `prefix/` that hold blobs (a dataset's id under
        `datasets`)."""
        ...

    def last_written(self, prefix: str, *, grace_s: float, now: float) -> float:
        """When anyone last wrote under `prefix` (0.0 when only abandoned temporary
        files are there), for sweeps that must leave an upload in progress alone."""
        ...

    def download_url(self, key: str, *, filename: str) -> str | None:
        """A time-limited URL that hands the blob to a client without credentials, as
        an attachment named `filename`; None where the API streams it itself."""
        ...

    def sweep_temp_files(self, prefix: str = "", *, grace_s: float) -> list[Path]: ...

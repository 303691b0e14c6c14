"""Blob storage in an S3-compatible object store (AWS, MinIO, Ceph, R2), for hosts
that share no disk.

The same operations as the local `BlobStore`, over boto3 (credentials, endpoint and
region from the standard `AWS_*` variables and files; retries with backoff on 5xx,
throttling and timeouts by botocore's standard retry mode):
- a writer streams a multipart upload, one part in memory at a time, and aborts it on
  failure, so a blob appears whole or not at all, as a rename does locally;
- `path(key)` is a local copy in the bounded `LocalCache`, fetched once per content
  hash (the object's ETag), for readers that map files or want a path;
- `presigned_url` hands a client a time-limited download of its own.
"""

import hashlib
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from app.storage.cache import LocalCache
from app.storage.in_flight import InFlight
from app.storage.temp_files import sweep_temp_files, temp_prefix

# S3's smallest part but the last; 8 MiB keeps a writer's memory flat and the parts
# well under the 10,000 a multipart upload may have for objects up to 80 GB.
PART_BYTES = 8 * 1024 * 1024
# Parts on the wire while the next gathers: a store answers each part after a round
# trip, so several keep a link busy while the writer's caller reads on. 40 MiB at most
# per writer.
PARTS_IN_FLIGHT = 4
_NOT_FOUND = {"404", "NoSuchKey", "NotFound"}


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or "a/b", no slashes at either end

    @classmethod
    def parse(cls, url: str) -> "S3Location":
        parsed = urlparse(url)
        if parsed.scheme != "s3" or not parsed.netloc:
            raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
        return cls(parsed.netloc, parsed.path.strip("/"))

    def object_key(self, key: str) -> str:
        # Segments as written: "a//b" or "./a" would name other objects than they seem.
        segments = key.split("/")
        if not key or any(part in ("", ".", "..") for part in segments):
            raise ValueError(f"blob key escapes the store: {key!r}")
        return f"{self.prefix}/{key}" if self.prefix else key


def s3_client(*, read_timeout_s: float = 60.0, **overrides: Any) -> Any:
    """A boto3 client from the standard AWS settings (`AWS_ENDPOINT_URL` included).

    botocore's standard retry mode retries 5xx answers, throttling and timeouts with
    jittered backoff; AWS_MAX_ATTEMPTS and AWS_RETRY_MODE change it as they would for
    any AWS SDK. A read that stalls for `read_timeout_s` counts as one failed attempt."""
    retries = {
        "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
        # The first try included, as AWS_MAX_ATTEMPTS counts (Config's "max_attempts"
        # would count retries only).
        "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", "5")),
    }
    config = Config(retries=retries, connect_timeout=5, read_timeout=read_timeout_s)
    region = os.environ.get("AWS_REGION")
    if region and not os.environ.get("AWS_DEFAULT_REGION"):
        # boto3 reads AWS_DEFAULT_REGION; other SDKs and MinIO's docs say AWS_REGION.
        overrides.setdefault("region_name", region)
    return boto3.client("s3", config=config, **overrides)


class S3BlobWriter:
    """Hashes and counts as it goes, like the local writer; sends a part whenever
    `PART_BYTES` have gathered. Parts go out on background threads, at most
    `PARTS_IN_FLIGHT` at once, so the writer's caller (an upload reading its body from
    the client) carries on while a part is on its way; memory stays bounded by those
    parts plus the one gathering."""

    def __init__(self, client: Any, bucket: str, key: str) -> None:
        self._client, self._bucket, self._key = client, bucket, key
        self._buffer = bytearray()
        self._parts: list[dict[str, Any]] = []
        self._sending: InFlight[dict[str, Any]] | None = None
        self._upload_id: str | None = None
        self.sha256 = hashlib.sha256()
        self.bytes_written = 0

    def write(self, chunk: bytes) -> None:
        self._buffer += chunk
        self.sha256.update(chunk)
        self.bytes_written += len(chunk)
        while len(self._buffer) >= PART_BYTES:
            self._send_part(bytes(self._buffer[:PART_BYTES]))
            del self._buffer[:PART_BYTES]

    def _send_part(self, body: bytes) -> None:
        if self._upload_id is None:
            started = self._client.create_multipart_upload(Bucket=self._bucket, Key=self._key)
            self._upload_id = started["UploadId"]
            self._sending = InFlight(threads=PARTS_IN_FLIGHT, limit=PARTS_IN_FLIGHT, name="s3-part")
        assert self._sending is not None
        number = len(self._parts) + len(self._sending) + 1
        # Waiting for the oldest part bounds memory, and raises its failure here.
        self._parts += self._sending.submit(self._upload_part, number, body)

    def _upload_part(self, number: int, body: bytes) -> dict[str, Any]:
        sent = self._client.upload_part(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=body,
        )
        return {"PartNumber": number, "ETag": sent["ETag"]}

    def commit(self) -> None:
        if self._upload_id is None:
            # Small enough for one request: no multipart upload was started.
            self._client.put_object(Bucket=self._bucket, Key=self._key, Body=bytes(self._buffer))
            return
        if self._buffer:
            self._send_part(bytes(self._buffer))
            self._buffer.clear()
        assert self._sending is not None
        self._parts += self._sending.drain()
        self._shut_down()
        self._client.complete_multipart_upload(
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": self._parts},
        )

    def _shut_down(self) -> None:
        if self._sending is not None:
            # Parts not yet started are dropped; those on the wire end before the abort.
            self._sending.close()
            self._sending = None

    def abort(self) -> None:
        self._shut_down()
        if self._upload_id is not None:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._key, UploadId=self._upload_id
            )


class S3BlobStore:
    def __init__(self, url: str, cache: LocalCache, client: Any | None = None) -> None:
        self.location = S3Location.parse(url)
        self.cache = cache
        self.client = client if client is not None else s3_client()

    def _key(self, key: str) -> str:
        return self.location.object_key(key)

    def _head(self, key: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(
                Bucket=self.location.bucket, Key=self._key(key)
            )
            return head
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                return None
            raise

    def exists(self, key: str) -> bool:
        return self._head(key) is not None

    def path(self, key: str) -> Path:
        """A local copy of the object, fetched into the cache once per content."""
        head = self._head(key)
        if head is None:
            raise FileNotFoundError(f"no object {key!r} in {self.location.bucket}")
        version = str(head["ETag"]).strip('"')

        def fetch(into: Path) -> None:
            self.client.download_file(self.location.bucket, self._key(key), str(into))

        return self.cache.get(key, version, fetch)

    @contextmanager
    def writer(self, key: str) -> Iterator[S3BlobWriter]:
        """Readers never see a half-written object, and a failure leaves none."""
        out = S3BlobWriter(self.client, self.location.bucket, self._key(key))
        try:
            yield out
            out.commit()
        except BaseException:
            out.abort()
            raise

    def put_bytes(self, key: str, data: bytes) -> None:
        with self.writer(key) as out:
            out.write(data)

    def read_bytes(self, key: str) -> bytes:
        try:
            body = self.client.get_object(Bucket=self.location.bucket, Key=self._key(key))
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) in _NOT_FOUND:
                raise FileNotFoundError(f"no object {key!r} in {self.location.bucket}") from exc
            raise
        data: bytes = body["Body"].read()
        return data

    @contextmanager
    def temporary_path(self, key: str) -> Iterator[Path]:
        """A local file to fill by a library that writes files itself; uploaded to
        `key` when the block ends without error."""
        # Named as every temporary file is, so a sweep can tell a dead writer's debris.
        fd, name = tempfile.mkstemp(dir=self.cache.root, prefix=temp_prefix("upload"))
        os.close(fd)
        tmp = Path(name)
        try:
            yield tmp
            self.client.upload_file(str(tmp), self.location.bucket, self._key(key))
        finally:
            tmp.unlink(missing_ok=True)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.location.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> None:
        """Every object under `prefix/` (and `prefix` itself), in pages of 1,000."""
        base = self._key(prefix)
        self.delete(prefix)
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=base.rstrip("/") + "/"
        )
        for page in pages:
            objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if objects:
                self.client.delete_objects(
                    Bucket=self.location.bucket, Delete={"Objects": objects, "Quiet": True}
                )

    def keys(self, prefix: str) -> list[str]:
        """The keys under `prefix/`, relative to the store."""
        base = self._key(prefix).rstrip("/") + "/"
        strip = len(self.location.prefix) + 1 if self.location.prefix else 0
        found: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=base
        )
        for page in pages:
            found += [item["Key"][strip:] for item in page.get("Contents", [])]
        return found

    def presigned_url(self, key: str, expires_s: int = 900, filename: str | None = None) -> str:
        params = {"Bucket": self.location.bucket, "Key": self._key(key)}
        if filename is not None:
            params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
        url: str = self.client.generate_presigned_url(
            "get_object", Params=params, ExpiresIn=expires_s
        )
        return url

    def download_url(self, key: str, *, filename: str) -> str | None:
        """Fifteen minutes to start the download: the bytes then go from the bucket to
        the client, not through the API."""
        return self.presigned_url(key, filename=filename)

    def children(self, prefix: str) -> list[str]:
        base = self._key(prefix).rstrip("/") + "/"
        names: list[str] = []
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=base, Delimiter="/"
        )
        for page in pages:
            names += [p["Prefix"][len(base) :].rstrip("/") for p in page.get("CommonPrefixes", [])]
        return sorted(names)

    def last_written(self, prefix: str, *, grace_s: float, now: float) -> float:
        """The newest object's time under `prefix/`. An upload that died was never
        completed, so it left no object; with none at all there is nothing to sweep."""
        base = self._key(prefix).rstrip("/") + "/"
        latest = 0.0
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.location.bucket, Prefix=base
        )
        for page in pages:
            for item in page.get("Contents", []):
                latest = max(latest, item["LastModified"].timestamp())
        return latest or now

    def sweep_temp_files(self, prefix: str = "", *, grace_s: float) -> list[Path]:
        """The bucket has no debris (an upload that died is never completed; a lifecycle
        rule on the bucket removes incomplete multipart uploads); the local files of
        uploads whose writer died do."""
        return sweep_temp_files(self.cache.root, grace_s=grace_s)

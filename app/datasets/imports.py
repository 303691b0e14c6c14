"""Datasets imported from object storage by URL, with the server's credentials.

The API checks the URL against the prefixes the operator allowed, reads the object's
size, ETag and first bytes (its format, judged as an upload's is) and records the
dataset; the ingest worker then copies the object into the dataset's own blob. The copy
is pinned to the ETag the API saw (`If-Match`), so an object replaced in between fails
the import instead of ingesting bytes nobody checked. The dataset owns its copy: the
source may change or vanish afterwards, and deleting the dataset never touches it.
"""

from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from app.datasets.formats import UnsupportedFormat, detect_format
from app.datasets.ingest_error import IngestError
from app.datasets.upload import SNIFF_BYTES
from app.errors import APIError
from app.storage import BlobSink

# S3 keys are at most 1024 bytes; bucket names at most 63 characters.
MAX_URL_CHARS = 1100
COPY_CHUNK_BYTES = 1024 * 1024
# A body cut mid-stream is taken up again from the byte it stopped at, this many times.
COPY_ATTEMPTS = 5
_MISSING = {"404", "NoSuchKey", "NotFound", "NoSuchBucket"}
_FORBIDDEN = {"403", "AccessDenied", "Forbidden"}
_CHANGED = {"412", "PreconditionFailed"}
# Past botocore's retries these still mean "try later", not "this request is wrong".
_TRANSIENT = {"500", "502", "503", "504", "SlowDown", "ServiceUnavailable", "InternalError"}


@dataclass(frozen=True)
class ObjectURL:
    bucket: str
    key: str

    @classmethod
    def parse(cls, url: str) -> "ObjectURL":
        parsed = urlparse(url)
        key = parsed.path.removeprefix("/")
        if parsed.scheme != "s3" or not parsed.netloc or not key or key.endswith("/"):
            raise APIError(
                422,
                "invalid_request",
                f"url: {url!r} is not an object URL; give s3://bucket/key (only object "
                "storage can be imported from)",
                "url",
            )
        if parsed.query or parsed.fragment or parsed.params:
            raise APIError(
                422,
                "invalid_request",
                f"url: {url!r} has a query or fragment; S3 keys with '?' or '#' cannot be imported",
                "url",
            )
        # S3 keys are literal, but some S3-compatible servers resolve "." and "..": a key
        # that could leave its prefix there is refused everywhere.
        if any(segment in ("", ".", "..") for segment in key.split("/")):
            raise APIError(
                422,
                "invalid_request",
                f"url: {url!r} has an empty, '.' or '..' path segment",
                "url",
            )
        return cls(parsed.netloc, key)

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def filename(self) -> str:
        return PurePosixPath(self.key).name


def source_client() -> Any:
    """A client with the server's own credentials (the standard AWS_* settings)."""
    # Imported here: boto3 costs every process tens of MB, and only imports need it.
    from app.storage.s3 import s3_client

    return s3_client()


def is_allowed(url: ObjectURL, prefixes: list[str], tenant_id: str) -> bool:
    """Whether `url` lies under one of `prefixes` (`{tenant}` standing for the tenant's
    id). A prefix ending in "/" is a folder; one without is a folder too, or the one
    object of that name: `s3://b/data` allows `s3://b/data/x.csv`, never `s3://b/data2`."""
    for prefix in prefixes:
        parsed = urlparse(prefix.replace("{tenant}", tenant_id))
        if parsed.netloc != url.bucket:
            continue
        path = parsed.path.removeprefix("/")
        if not path:
            return True
        folder = path if path.endswith("/") else f"{path}/"
        if url.key == path or url.key.startswith(folder):
            return True
    return False


def check_allowed(url: ObjectURL, prefixes: list[str], tenant_id: str) -> None:
    if is_allowed(url, prefixes, tenant_id):
        return
    hint = (
        "this server allows no imports by URL (its operator lists the prefixes in "
        "SHARDTRAIN_IMPORT_ALLOWED_PREFIXES)"
        if not prefixes
        else "it is outside every prefix this server's operator allows imports from"
    )
    raise APIError(403, "import_not_allowed", f"Importing {url} is not allowed: {hint}.", "url")


@dataclass(frozen=True)
class SourceObject:
    url: ObjectURL
    bytes: int
    etag: str
    format: str


def inspect_source(client: Any, url: ObjectURL, *, max_bytes: int) -> SourceObject:
    """The object's size, ETag and format, or the 4xx/503 a client can act on."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        head = client.head_object(Bucket=url.bucket, Key=url.key)
        size, etag = int(head["ContentLength"]), str(head["ETag"])
        if size == 0:
            raise APIError(422, "empty_file", f"The object {url} is empty.", "url")
        if size > max_bytes:
            raise APIError(
                413,
                "file_too_large",
                f"The object {url} is {size} bytes, over the upload limit of {max_bytes}.",
                "url",
            )
        first = client.get_object(
            Bucket=url.bucket, Key=url.key, IfMatch=etag, Range=f"bytes=0-{SNIFF_BYTES - 1}"
        )["Body"].read()
    except ClientError as exc:
        if _code(exc) in _TRANSIENT:
            raise _unavailable(url, _code(exc)) from exc
        raise _client_error(exc, url) from exc
    except BotoCoreError as exc:
        # Left after botocore's own retries: the store, not the request, is at fault.
        raise _unavailable(url, type(exc).__name__) from exc
    try:
        fmt = detect_format(url.filename, first)
    except UnsupportedFormat as exc:
        raise APIError(415, "unsupported_format", f"Unsupported file: {exc}.", "url") from exc
    return SourceObject(url=url, bytes=size, etag=etag, format=fmt)


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _unavailable(url: ObjectURL, why: str) -> APIError:
    return APIError(
        503,
        "storage_unavailable",
        f"Object storage did not answer for {url} ({why}); nothing was recorded. Retry shortly.",
        "url",
        headers={"Retry-After": "30"},
    )


def _client_error(exc: Any, url: ObjectURL) -> APIError:
    code = _code(exc)
    if code in _MISSING:
        return APIError(422, "object_not_found", f"There is no object at {url}.", "url")
    if code in _FORBIDDEN:
        return APIError(
            403,
            "object_forbidden",
            f"The server's credentials may not read {url}; its operator must grant "
            "s3:GetObject on it.",
            "url",
        )
    if code in _CHANGED:
        return APIError(
            409, "object_changed", f"The object {url} changed while it was read; retry.", "url"
        )
    return APIError(
        502,
        "storage_error",
        f"Object storage refused to read {url}: {code or type(exc).__name__}.",
        "url",
    )


def copy_source(client: Any, url: str, etag: str, size: int, out: BlobSink) -> None:
    """Stream the object into `out`, resuming a body cut off mid-way from the byte it
    stopped at; an IngestError names what the user can do when the object is gone,
    replaced or unreadable."""
    from botocore.exceptions import BotoCoreError, ClientError
    from urllib3.exceptions import HTTPError

    source = ObjectURL.parse(url)
    for attempt in range(1, COPY_ATTEMPTS + 1):
        try:
            ranged = {"Range": f"bytes={out.bytes_written}-"} if out.bytes_written else {}
            body = client.get_object(Bucket=source.bucket, Key=source.key, IfMatch=etag, **ranged)[
                "Body"
            ]
            for chunk in body.iter_chunks(COPY_CHUNK_BYTES):
                if out.bytes_written + len(chunk) > size:
                    raise IngestError(f"the object {url} grew while it was copied; import it again")
                out.write(chunk)
            if out.bytes_written != size:
                raise IngestError(
                    f"the object {url} ended after {out.bytes_written} of its {size} bytes"
                )
            return
        except ClientError as exc:
            # A 5xx here already outlasted botocore's own retries: no second round of them.
            if _code(exc) in _TRANSIENT:
                raise IngestError(_gave_up(url, _code(exc))) from exc
            raise IngestError(_copy_failure(exc, url)) from exc
        except (BotoCoreError, HTTPError) as exc:
            if attempt == COPY_ATTEMPTS:
                raise IngestError(_gave_up(url, type(exc).__name__)) from exc


def _gave_up(url: str, why: str) -> str:
    return (
        f"object storage stopped answering while {url} was copied ({why}, past its "
        "retries); nothing is wrong with the file: import it again"
    )


def _copy_failure(exc: Any, url: str) -> str:
    code = _code(exc)
    if code in _MISSING:
        return f"the object {url} was deleted before it could be imported"
    if code in _CHANGED:
        return (
            f"the object {url} was replaced after the import was requested (its ETag "
            "changed); import it again to take the new contents"
        )
    if code in _FORBIDDEN:
        return f"the server's credentials may no longer read {url}"
    return f"object storage refused to read {url}: {code or type(exc).__name__}"

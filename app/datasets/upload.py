"""Stream a multipart upload straight into blob storage.

Starlette's form parser spools every file part to a temporary file before the
route runs, so a 10 GB upload would be written twice and the size limit would
only bite after the whole body had arrived. Here the body is parsed as it
arrives, chunk by chunk: memory holds one chunk plus the first bytes needed to
recognise the format, and the limit is enforced the moment it is crossed.
"""

import errno
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

import anyio
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.datasets.formats import UnsupportedFormat, detect_format
from app.errors import APIError
from app.nul_characters import MESSAGE, NUL
from app.storage import BlobSink, BlobStore

# A full disk, or the data directory's quota: the server's condition, not the client's.
_STORAGE_FULL = (errno.ENOSPC, errno.EDQUOT)

SNIFF_BYTES = 64 * 1024
MAX_NAME_BYTES = 255


@dataclass
class StoredUpload:
    filename: str
    name: str | None
    format: str
    bytes: int
    # None for an import: the worker hashes the object as it copies it in.
    sha256: str | None = None


@dataclass
class _Part:
    form_field: str = ""
    filename: str | None = None
    header_field: bytes = b""
    header_value: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)


class _UploadSink:
    """The parser's callbacks: the `file` part goes to the blob, `name` to memory."""

    def __init__(self, out: BlobSink, max_bytes: int) -> None:
        self._out = out
        self._max_bytes = max_bytes
        self._part = _Part()
        self._head = bytearray()
        self.format: str | None = None
        self.filename: str | None = None
        self.name: bytearray | None = None
        self.file_parts = 0
        # Set only by the closing boundary: a body that stops short of it lost its end.
        self.closed = False

    def on_part_begin(self) -> None:
        self._part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._part.header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._part.header_value += data[start:end]

    def on_header_end(self) -> None:
        self._part.headers[self._part.header_field.lower()] = self._part.header_value
        self._part.header_field, self._part.header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._part.headers.get(b"content-disposition", b""))
        self._part.form_field = options.get(b"name", b"").decode("utf-8", "replace")
        if self._part.form_field == "file":
            self.file_parts += 1
            if self.file_parts > 1:
                raise APIError(422, "invalid_request", "Send exactly one `file` part.", "file")
            raw_name = options.get(b"filename", b"")
            self.filename = raw_name.decode("utf-8", "replace")
            if NUL in self.filename:
                raise APIError(422, "invalid_request", f"file: its filename {MESSAGE}", "file")
        elif self._part.form_field == "name":
            self.name = bytearray()

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._part.form_field == "name" and self.name is not None:
            self.name += chunk
            if NUL.encode() in chunk:
                raise APIError(422, "invalid_request", f"name: {MESSAGE}", "name")
            if len(self.name) > MAX_NAME_BYTES:
                raise APIError(
                    422, "invalid_request", f"name: at most {MAX_NAME_BYTES} bytes", "name"
                )
        elif self._part.form_field == "file":
            self._write(chunk)

    def _write(self, chunk: bytes) -> None:
        if self._out.bytes_written + len(self._head) + len(chunk) > self._max_bytes:
            raise APIError(
                413,
                "file_too_large",
                f"The file exceeds the upload limit of {self._max_bytes} bytes.",
                "file",
            )
        if self.format is not None:
            self._out.write(chunk)
            return
        # The format is judged on the first bytes before anything is kept.
        self._head += chunk
        if len(self._head) >= SNIFF_BYTES:
            self._flush_head()

    def _flush_head(self) -> None:
        try:
            self.format = detect_format(self.filename or "", bytes(self._head))
        except UnsupportedFormat as exc:
            raise APIError(415, "unsupported_format", f"Unsupported file: {exc}.", "file") from exc
        self._out.write(bytes(self._head))
        self._head.clear()

    def on_end(self) -> None:
        self.closed = True

    def finish(self) -> None:
        if self.file_parts == 0:
            raise APIError(422, "invalid_request", "file: a `file` part is required", "file")
        if self.format is None:
            if not self._head:
                raise APIError(422, "empty_file", "The uploaded file is empty.", "file")
            self._flush_head()

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_end": self.on_end,
        }


def _truncated(message: str) -> APIError:
    return APIError(
        400, "truncated_body", f"{message} Nothing was stored; send the whole file again.", "file"
    )


async def idle_bounded(body: AsyncIterator[bytes], idle_s: float) -> AsyncIterator[bytes]:
    """The body, abandoned with a 408 once `idle_s` pass without a byte: a client that
    stalls mid-upload would otherwise hold its connection and upload slot for good."""
    chunks = aiter(body)
    while True:
        try:
            with anyio.fail_after(idle_s):
                chunk = await anext(chunks)
        except StopAsyncIteration:
            return
        except TimeoutError as exc:
            raise APIError(
                408,
                "upload_timeout",
                f"No bytes arrived for {idle_s:g} s; the upload was abandoned and nothing "
                "was stored. Send the whole file again.",
                "file",
            ) from exc
        yield chunk


async def receive_upload(
    body: AsyncIterator[bytes],
    headers: Mapping[str, str],
    store: BlobStore,
    key: str,
    *,
    max_bytes: int,
) -> StoredUpload:
    """Parse the request body into the blob at `key`; on any error no blob remains."""
    content_type, options = parse_options_header(headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise APIError(
            415,
            "unsupported_media_type",
            "Send the file as multipart/form-data with a `file` part.",
            "file",
        )
    declared = headers.get("content-length")
    # Multipart framing adds a few hundred bytes; anything far beyond the limit is refused
    # before a byte is read.
    if declared and declared.isdigit() and int(declared) > max_bytes + 64 * 1024:
        raise APIError(
            413,
            "file_too_large",
            f"The file exceeds the upload limit of {max_bytes} bytes.",
            "file",
        )
    try:
        with store.writer(key) as out:
            sink = _UploadSink(out, max_bytes)
            parser = MultipartParser(boundary, sink.callbacks())  # type: ignore[arg-type]
            received = 0
            try:
                async for chunk in body:
                    received += len(chunk)
                    parser.write(chunk)
                parser.finalize()
            except MultipartParseError as exc:
                raise APIError(
                    422, "invalid_request", f"Malformed multipart body: {exc}", "file"
                ) from exc
            # python-multipart's finalize() accepts a body that stops anywhere, so a cut
            # connection or a broken client would store the first half of a file as the file.
            if declared and declared.isdigit() and received < int(declared):
                raise _truncated(
                    f"The body ended after {received} of the {declared} bytes its "
                    "Content-Length declares."
                )
            if not sink.closed:
                raise _truncated(
                    "The multipart body ended before its closing boundary: "
                    "the upload was cut short."
                )
            sink.finish()
    except OSError as exc:
        if exc.errno in _STORAGE_FULL:
            # The writer has already removed its temporary file: nothing is kept.
            raise APIError(
                507,
                "insufficient_storage",
                "The server's storage is full; nothing was stored. Retry later, or ask "
                "the operator to free space.",
                "file",
            ) from exc
        raise
    name = sink.name.decode("utf-8", "replace") if sink.name is not None else None
    assert sink.format is not None
    return StoredUpload(
        filename=sink.filename or "",
        name=name,
        format=sink.format,
        bytes=out.bytes_written,
        sha256=out.sha256.hexdigest(),
    )

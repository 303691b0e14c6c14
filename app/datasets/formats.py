"""Which tabular format a file is: named by its extension, confirmed by its first bytes."""

import csv
import io
import pickletools
from pathlib import PurePosixPath

FORMATS = ("csv", "parquet", "jsonl")
_BY_EXTENSION = {
    ".csv": "csv",
    ".tsv": "csv",
    ".txt": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "jsonl",
}
# Magic numbers of files people upload by mistake; none is tabular text.
_BINARY_SIGNATURES = {
    b"PK\x03\x04": "a zip archive",
    b"\x1f\x8b": "a gzip file",
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"%PDF": "a PDF document",
    b"\x80": "a Python pickle",
    b"\x93NUMPY": "a NumPy array file",
}
CSV_DELIMITERS = ",;\t|"


class UnsupportedFormat(ValueError):
    pass


def detect_format(filename: str, head: bytes) -> str:
    """Return "csv", "parquet" or "jsonl", or raise UnsupportedFormat saying why."""
    suffix = PurePosixPath(filename or "").suffix.lower()
    named = _BY_EXTENSION.get(suffix)
    if head.startswith(b"PAR1"):
        if named not in (None, "parquet"):
            raise UnsupportedFormat(f"{filename!r} is named as {named} but holds Parquet data")
        return "parquet"
    for signature, what in _BINARY_SIGNATURES.items():
        if head.startswith(signature):
            raise UnsupportedFormat(f"the file is {what}, not CSV, Parquet or JSON Lines")
    if named == "parquet":
        raise UnsupportedFormat(f"{filename!r} is named as Parquet but lacks the PAR1 signature")
    if _is_pickle(head):
        raise UnsupportedFormat("the file is a Python pickle, not CSV, Parquet or JSON Lines")
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A chunk boundary can split a multi-byte character; only the last 3 bytes may.
        if exc.start < len(head) - 3:
            raise UnsupportedFormat("the file is neither UTF-8 text nor Parquet") from exc
        text = head[: exc.start].decode("utf-8")
    if "\x00" in text:
        raise UnsupportedFormat("the file is binary, not CSV, Parquet or JSON Lines")
    if named == "jsonl" and text.lstrip().startswith("["):
        raise UnsupportedFormat(
            "the file is one JSON array, but JSON Lines holds one object per line "
            "(convert it with: jq -c '.[]' file.json > file.jsonl)"
        )
    if named:
        return named
    return "jsonl" if text.lstrip().startswith("{") else "csv"


# A head cut short by the sniffing window still disassembles as this many opcodes before
# it runs out of bytes; text breaks the pickle machine's stack within its first few.
_PICKLE_MIN_OPCODES = 16


def _is_pickle(head: bytes) -> bool:
    """Protocols 0 and 1 have no magic number (protocol 0 is even printable text), so a
    pickle is recognised by disassembling it: `pickletools.dis` reads opcodes and checks
    the stack and marks they use, and never builds an object. Opcodes alone are not
    enough: CSV text such as `size,…` parses as opcodes (`s`, `i`, …) and a decimal
    point is STOP, but pops from an empty stack."""
    listing = io.StringIO()
    try:
        pickletools.dis(head, out=listing)
    except Exception as exc:  # every way the bytes fail to be a pickle
        message = str(exc)
        cut_short = any(
            sign in message for sign in ("exhausted", "but only", "not enough data", "no newline")
        )
        return cut_short and listing.getvalue().count("\n") >= _PICKLE_MIN_OPCODES
    return True


def sniff_delimiter(head: bytes) -> str:
    sample = head.decode("utf-8", errors="ignore")
    lines = sample.splitlines()
    if len(lines) > 1 and not sample.endswith("\n"):
        sample = "\n".join(lines[:-1])  # the last line may be cut mid-row
    try:
        return csv.Sniffer().sniff(sample, delimiters=CSV_DELIMITERS).delimiter
    except csv.Error:
        return ","

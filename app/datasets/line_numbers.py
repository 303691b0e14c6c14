"""The file line a record starts on, for errors a person fixes in an editor.

pyarrow counts records, per block, and skips empty lines; a quoted CSV value may
span lines. These scans read the file as a stream (memory holds one record) and
run only after an ingest has already failed, so their speed costs nothing on the
success path.
"""

import csv
import sys
from collections.abc import Iterator
from pathlib import Path

# The csv module refuses fields over 128 KiB by default; pyarrow reads any size,
# so the scan must too or it would stop at a field pyarrow accepted.
csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def csv_record_lines(path: Path, delimiter: str) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) of each non-empty record, the header included."""
    with path.open(newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        end_of_previous = 0
        for fields in reader:
            start = end_of_previous + 1
            end_of_previous = reader.line_num
            if fields:  # an empty line is no record, for pyarrow as here
                yield start, fields


def csv_row_line(path: Path, delimiter: str, row: int) -> int:
    """The line data row `row` (0-based, after the header) starts on."""
    last = 0
    for index, (line, _) in enumerate(csv_record_lines(path, delimiter)):
        last = line
        if index == row + 1:
            return line
    return last + 1


def jsonl_lines(path: Path, start_row: int = 0) -> Iterator[tuple[int, bytes]]:
    """(line number, bytes) of each non-blank line from data row `start_row` on."""
    with path.open("rb") as handle:
        row = 0
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if row >= start_row:
                yield number, line.rstrip(b"\r\n")
            row += 1


def jsonl_row_line(path: Path, row: int) -> int:
    for number, _ in jsonl_lines(path, row):
        return number
    return 0

"""CSV to record batches, with errors that name the file's line and column."""

import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv

from app.datasets import ingest_error
from app.datasets.formats import sniff_delimiter
from app.datasets.ingest_error import (
    IngestError,
    grown_block,
    is_straddle,
    row_too_long,
    rows_after,
    short,
)
from app.datasets.line_numbers import csv_record_lines, csv_row_line

# What pyarrow's threaded reader parses at once: large enough to keep every core busy
# (it splits a segment into blocks of its own), small enough for flat memory.
SEGMENT_BYTES = 32 * 1024 * 1024


def csv_delimiter(path: Path) -> str:
    with path.open("rb") as handle:
        return sniff_delimiter(handle.read(64 * 1024))


def csv_batches(path: Path, sizes: tuple[int, int]) -> Iterator[pa.RecordBatch | pa.Table]:
    infer_bytes, block_bytes = sizes
    delimiter = csv_delimiter(path)
    parse_options = pacsv.ParseOptions(delimiter=delimiter)
    names, types = _infer(path, delimiter, parse_options, infer_bytes)
    convert_options = pacsv.ConvertOptions(
        column_types=dict(zip(names, types, strict=True)), strings_can_be_null=True
    )
    rows = 0
    try:
        for batch in _segments(path, names, parse_options, convert_options):
            rows += batch.num_rows
            yield batch
        return
    except (_LeaveToStreaming, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        # The streaming reader below reads on from the same row, and says which line
        # and column are at fault in the words every reader of this module uses.
        pass
    threads = True
    while True:
        read_options = pacsv.ReadOptions(block_size=block_bytes, use_threads=threads)
        try:
            reader = pacsv.open_csv(
                path,
                read_options=read_options,
                parse_options=parse_options,
                convert_options=convert_options,
            )
            for batch in rows_after(reader, skip=rows):
                rows += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as exc:
            if is_straddle(exc):
                grown = grown_block(block_bytes)
                if grown is None:
                    raise row_too_long(
                        f"after line {csv_row_line(path, delimiter, rows - 1)}"
                    ) from exc
                # One large block in flight at a time keeps memory near its size.
                block_bytes, threads = grown, False
                continue
            context = _Context(path, delimiter, parse_options, names, types, block_bytes)
            raise IngestError(context.explain(str(exc), rows)) from exc


class _LeaveToStreaming(Exception):
    """A row longer than the bound on one row: the streaming reader refuses it."""


def _segments(
    path: Path,
    names: list[str],
    parse_options: pacsv.ParseOptions,
    convert_options: pacsv.ConvertOptions,
) -> Iterator[pa.Table]:
    """The file in segments cut at line ends, each parsed by pyarrow's multi-threaded
    reader: the streaming reader parses on one thread, at about two thirds of that
    speed on two cores. A segment is parsed whole (memory: a segment and its table);
    a file it cannot parse is left to the streaming reader, from the first row of the
    segment that failed, which names the line at fault."""
    segment_bytes = min(SEGMENT_BYTES, ingest_error.MAX_BLOCK_BYTES)
    header = pacsv.ReadOptions(use_threads=True)
    following = pacsv.ReadOptions(use_threads=True, column_names=names)
    carry = b""
    first = True
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(segment_bytes)
            done = not chunk
            if done:
                # The last line may lack its line end.
                piece, carry = carry, b""
            else:
                end = chunk.rfind(b"\n")
                if end == -1:
                    carry += chunk
                    if len(carry) > ingest_error.MAX_BLOCK_BYTES:
                        raise _LeaveToStreaming
                    continue
                # The row begun in `carry` ends at this chunk's first line end.
                if carry and len(carry) + chunk.find(b"\n") + 1 > ingest_error.MAX_BLOCK_BYTES:
                    raise _LeaveToStreaming
                piece, carry = carry + chunk[: end + 1], chunk[end + 1 :]
            if piece and not piece.isspace():
                table = pacsv.read_csv(
                    pa.BufferReader(piece),
                    read_options=header if first else following,
                    parse_options=parse_options,
                    convert_options=convert_options,
                )
                first = False
                # Whole: the checks after the read then run once per column per segment,
                # not once per block of a few thousand rows.
                yield table
            if done:
                return


def _infer(
    path: Path, delimiter: str, parse_options: pacsv.ParseOptions, infer_bytes: int
) -> tuple[list[str], list[pa.DataType]]:
    """Column names and types from the first block, grown until a whole row fits."""
    while True:
        try:
            inference = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=infer_bytes, use_threads=False),
                parse_options=parse_options,
                convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
            )
        except pa.ArrowInvalid as exc:
            if is_straddle(exc):
                grown = grown_block(infer_bytes)
                if grown is None:
                    raise row_too_long("in the first rows") from exc
                infer_bytes = grown
                continue
            context = _Context(path, delimiter, parse_options, [], [], infer_bytes)
            raise IngestError(context.explain(str(exc), 0)) from exc
        try:
            names = inference.schema.names
        except UnicodeDecodeError as exc:
            raise IngestError(
                f"line 1: the header is not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
                "save the file as UTF-8"
            ) from exc
        # A column empty in the sample has no type yet: text takes anything later. Bytes
        # that are not UTF-8 infer as binary; read as text they fail on their own line.
        types = [
            pa.string() if pa.types.is_null(t) or pa.types.is_binary(t) else t
            for t in inference.schema.types
        ]
        # Dropped, not just closed: a closed reader still holds its read-ahead blocks.
        inference.close()
        del inference
        return names, types


class _Context:
    """What a failed read needs to find the line at fault."""

    def __init__(
        self,
        path: Path,
        delimiter: str,
        parse_options: pacsv.ParseOptions,
        names: list[str],
        types: list[pa.DataType],
        block_bytes: int,
    ) -> None:
        self.path = path
        self.delimiter = delimiter
        self.parse_options = parse_options
        self.names = names
        self.types = types
        self.block_bytes = block_bytes

    def line(self, row: int) -> int:
        return csv_row_line(self.path, self.delimiter, row)

    def explain(self, message: str, rows: int) -> str:
        if "Empty CSV file" in message and rows == 0:
            if next(csv_record_lines(self.path, self.delimiter), None) is None:
                return "the file holds no header line and no rows, only blank lines"
            return "the file holds no data rows, only a header line"
        if "Expected" in message and "Row #" not in message:
            # Parallel parsing loses row numbers; a serial pass finds the row again.
            message = self._serial_parse_error() or message
        # pyarrow's "Row #" counts records from the header, skipping empty lines.
        ragged = re.search(r"Row #(\d+): Expected (\d+) columns, got (\d+)", message)
        if ragged:
            record, expected, found = (int(g) for g in ragged.groups())
            return f"line {self.line(record - 2)}: expected {expected} fields, found {found}"
        column = re.search(r"column #(\d+): (.*)", message)
        if column and int(column.group(1)) < len(self.names):
            index = int(column.group(1))
            found_value = self._locate_bad_value(index, rows)
            if found_value:
                return found_value
            name = self.names[index]
            return f"column {name!r}: {column.group(2)} (its type was inferred from the first rows)"
        return message

    def _as_bytes(self) -> pacsv.ConvertOptions:
        return pacsv.ConvertOptions(
            column_types=dict.fromkeys(self.names, pa.binary()), strings_can_be_null=True
        )

    def _serial_parse_error(self) -> str | None:
        try:
            for _ in pacsv.open_csv(
                self.path,
                read_options=pacsv.ReadOptions(block_size=self.block_bytes, use_threads=False),
                parse_options=self.parse_options,
                convert_options=self._as_bytes(),
            ):
                pass
        except pa.ArrowInvalid as exc:
            return str(exc)
        return None

    def _locate_bad_value(self, index: int, start_row: int) -> str | None:
        """Find the line whose value broke the column's inferred type.

        pyarrow names only the column; a second streaming pass reads everything as
        bytes from the failing block on and bisects a batch with vectorised casts.
        """
        inferred = self.types[index]
        reader = pacsv.open_csv(
            self.path,
            read_options=pacsv.ReadOptions(block_size=self.block_bytes, use_threads=False),
            parse_options=self.parse_options,
            convert_options=self._as_bytes(),
        )
        row = 0
        for batch in reader:
            if row + batch.num_rows <= start_row:
                row += batch.num_rows
                continue
            values = batch.column(index)
            bad = first_not_castable(values, inferred)
            if bad is None:
                row += batch.num_rows
                continue
            raw = values[bad].as_py()
            where = f"line {self.line(row + bad)}: column {self.names[index]!r}"
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                return (
                    f"{where}: {short(raw)} is not UTF-8 text (byte {raw[exc.start]:#04x}); "
                    "save the file as UTF-8"
                )
            return (
                f"{where}: cannot read {short(text)} as {_dtype_name(inferred)}, "
                "the type inferred from the first rows"
            )
        return None


def first_not_castable(values: pa.Array, target: pa.DataType) -> int | None:
    """The index of the first value that does not cast to `target`, by bisection."""
    if _casts(values, target):
        return None
    low, high = 0, len(values)  # the first bad value lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _casts(values.slice(low, middle - low), target):
            low = middle
        else:
            high = middle
    return low


def _casts(values: pa.Array, target: pa.DataType) -> bool:
    try:
        if pa.types.is_binary(values.type):
            # Bytes become text first: that is where a non-UTF-8 byte fails.
            values = values.cast(pa.string())
        values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


def _dtype_name(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    return str(arrow_type)

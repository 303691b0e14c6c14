"""Convert an uploaded file to Parquet batch by batch, inferring the column schema.

Memory stays bounded whatever the file size: a CSV segment (`ingest_csv`) or a
record batch, and the couple of tables the writer thread has queued
(`ingest_writer`). Every error names
what a person can fix: the file's line (CSV, JSON Lines) or row (Parquet) and the
column.
"""

import errno
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from app.datasets.column_stats import ColumnStats
from app.datasets.ingest_csv import csv_batches, csv_delimiter, first_not_castable
from app.datasets.ingest_error import (
    BLOCK_BYTES,
    FLOAT32_MAX,
    INFER_BYTES,
    IngestError,
    out_of_range,
    short,
)
from app.datasets.ingest_jsonl import jsonl_batches
from app.datasets.ingest_writer import BackgroundWriter
from app.datasets.line_numbers import csv_row_line, jsonl_row_line

__all__ = ["BLOCK_BYTES", "INFER_BYTES", "IngestError", "IngestResult", "ingest_file"]

PARQUET_BATCH_ROWS = 65_536
ROW_GROUP_ROWS = 65_536


@dataclass(frozen=True)
class IngestResult:
    rows: int
    columns: list[dict[str, object]]


def _dtype_of(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    return "string"


_STORAGE_TYPES = {
    "bool": pa.bool_(),
    "int": pa.int64(),
    "float": pa.float64(),
    "string": pa.string(),
}
_WHERE_NAMES_ARE = {
    "csv": "the header line",
    "jsonl": "the objects' keys",
    "parquet": "the Parquet schema",
}


def _storage_schema(schema: pa.Schema, fmt: str) -> pa.Schema:
    names = schema.names
    blank = [str(i + 1) for i, n in enumerate(names) if not n.strip()]
    if blank:
        which = f"column {blank[0]}" if len(blank) == 1 else f"columns {', '.join(blank)}"
        raise IngestError(
            f"{which} (counting from 1) {'has' if len(blank) == 1 else 'have'} no name; "
            f"name every column in {_WHERE_NAMES_ARE[fmt]}"
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        positions = "; ".join(
            f"{n!r} at columns {', '.join(str(i + 1) for i, m in enumerate(names) if m == n)}"
            for n in duplicates
        )
        raise IngestError(f"duplicate column name(s): {positions}")
    fields = []
    for field in schema:
        if pa.types.is_nested(field.type):
            raise IngestError(f"column {field.name!r} holds nested values, which a table cannot")
        fields.append(pa.field(field.name, _STORAGE_TYPES[_dtype_of(field.type)]))
    return pa.schema(fields)


def _parquet_batches(path: Path, _sizes: tuple[int, int]) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=PARQUET_BATCH_ROWS)


Reader = Callable[[Path, tuple[int, int]], Iterator[pa.RecordBatch | pa.Table]]
_READERS: dict[str, Reader] = {
    "csv": csv_batches,
    "jsonl": jsonl_batches,
    "parquet": _parquet_batches,
}


def _locator(fmt: str, source: Path) -> Callable[[int], str]:
    """Where data row `row` (0-based) is, in the words of the file's format."""
    if fmt == "csv":
        delimiter = csv_delimiter(source)
        return lambda row: f"line {csv_row_line(source, delimiter, row)}"
    if fmt == "jsonl":
        return lambda row: f"line {jsonl_row_line(source, row)}"
    return lambda row: f"row {row + 1}"  # Parquet has no lines


def ingest_file(
    source: Path,
    fmt: str,
    destination: Path,
    *,
    infer_bytes: int = INFER_BYTES,
    block_bytes: int = BLOCK_BYTES,
) -> IngestResult:
    rows = 0
    writer: BackgroundWriter | None = None
    schema: pa.Schema | None = None
    missing: list[int] = []
    stats: ColumnStats | None = None
    locate = _locator(fmt, source)
    # Small read blocks are gathered into row groups of a useful size before writing.
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        for batch in _READERS[fmt](source, (infer_bytes, block_bytes)):
            if schema is None:
                schema = _storage_schema(batch.schema, fmt)
                writer = BackgroundWriter(destination, schema)
                missing = [0] * len(schema)
                stats = ColumnStats(schema)
            elif batch.schema.names != schema.names:
                raise IngestError(
                    f"{locate(rows)}: the columns change to {batch.schema.names} "
                    f"from {schema.names}"
                )
            table = _cast(batch, schema, rows, locate)
            for i, column in enumerate(table.columns):
                missing[i] += column.null_count
            assert stats is not None
            stats.add(table)
            rows += table.num_rows
            pending.append(table)
            pending_rows += table.num_rows
            if pending_rows >= ROW_GROUP_ROWS:
                assert writer is not None
                writer.write_table(pa.concat_tables(pending))
                pending, pending_rows = [], 0
        if pending and writer is not None:
            writer.write_table(pa.concat_tables(pending))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise  # the server's disk, not the file: the caller says so
        raise IngestError(str(exc)) from exc
    except UnicodeDecodeError as exc:
        # pyarrow hands column names over as Python text, decoding them only then.
        raise IngestError(
            f"a column name is not UTF-8 text (byte {exc.object[exc.start]:#04x}); "
            "save the file as UTF-8"
        ) from exc
    finally:
        if writer is not None:
            writer.close()
    if schema is None or rows == 0 or stats is None:
        raise IngestError("the file holds no data rows")
    columns = [
        {"name": f.name, "dtype": _dtype_of(f.type), "missing": missing[i], **stats.of(i)}
        for i, f in enumerate(schema)
    ]
    return IngestResult(rows=rows, columns=columns)


def _cast(
    batch: pa.RecordBatch | pa.Table,
    schema: pa.Schema,
    first_row: int,
    locate: Callable[[int], str],
) -> pa.Table:
    arrays = []
    for field, column in zip(schema, batch.columns, strict=True):
        try:
            cast = column.cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            bad = first_not_castable(column, field.type)
            if bad is None:
                raise IngestError(f"column {field.name!r}: {exc}") from exc
            raise IngestError(
                f"{locate(first_row + bad)}: column {field.name!r}: cannot read "
                f"{short(column[bad].as_py())} as {_dtype_of(field.type)}: {exc}"
            ) from exc
        if pa.types.is_floating(field.type):
            cast = _checked_floats(cast, field.name, first_row, locate)
        elif pa.types.is_string(field.type):
            _check_utf8(cast, field.name, first_row, locate)
        arrays.append(cast)
    return pa.Table.from_arrays(arrays, schema=schema)


def _checked_floats(
    values: pa.Array, name: str, first_row: int, locate: Callable[[int], str]
) -> pa.Array:
    """Refuse infinities and float32 overflow; NaN becomes missing (null).

    Training runs in float32, where either makes the model diverge far from the
    cause; NaN is what pandas and NumPy write for a missing value.
    """
    # One pass for the range (min_max passes over NaN and nulls); the row only when
    # a value is out of it.
    low, high = (v.as_py() for v in pc.min_max(values).values())
    if any(v is not None and abs(v) > FLOAT32_MAX for v in (low, high)):
        too_large = pc.greater(pc.abs(values), FLOAT32_MAX)
        bad = pc.index(too_large, True).as_py()
        value = values[bad].as_py()
        raise IngestError(f"{locate(first_row + bad)}: column {name!r}: {out_of_range(value)}")
    nan = pc.is_nan(values)
    if pc.any(nan).as_py():
        return pc.if_else(nan, pa.scalar(None, values.type), values)
    return values


def _check_utf8(values: pa.Array, name: str, first_row: int, locate: Callable[[int], str]) -> None:
    """pyarrow's JSON reader keeps bytes that are not UTF-8 in text columns; stored,
    they would break every later read of the dataset."""
    if _valid(values):
        return
    low, high = 0, len(values)  # the first bad value lies in [low, high)
    while high - low > 1:
        middle = (low + high) // 2
        if _valid(values.slice(low, middle - low)):
            low = middle
        else:
            high = middle
    raw = values.cast(pa.binary())[low].as_py()
    raise IngestError(
        f"{locate(first_row + low)}: column {name!r}: {short(raw)} is not UTF-8 text; "
        "save the file as UTF-8"
    )


def _valid(values: pa.Array) -> bool:
    try:
        values.validate(full=True)
    except pa.ArrowInvalid:
        return False
    return True

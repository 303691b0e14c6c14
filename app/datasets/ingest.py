"""Convert an uploaded file to Parquet batch by batch, inferring the column schema.

Memory stays bounded by one record batch whatever the file size.
"""

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from app.datasets.formats import sniff_delimiter

CSV_BLOCK_BYTES = 16 * 1024 * 1024
PARQUET_BATCH_ROWS = 65_536


class IngestError(ValueError):
    """The file is not a usable table; the message names the line or column at fault."""


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


def _storage_schema(schema: pa.Schema) -> pa.Schema:
    names = schema.names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise IngestError(f"duplicate column name(s): {', '.join(duplicates)}")
    fields = []
    for field in schema:
        if pa.types.is_nested(field.type):
            raise IngestError(f"column {field.name!r} holds nested values, which a table cannot")
        fields.append(pa.field(field.name, _STORAGE_TYPES[_dtype_of(field.type)]))
    return pa.schema(fields)


def _csv_batches(path: Path) -> Iterator[pa.RecordBatch]:
    with path.open("rb") as handle:
        delimiter = sniff_delimiter(handle.read(64 * 1024))

    # open_csv parses the first block at once, so its errors need the same translation.
    names: list[str] = []
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=False),
            parse_options=pacsv.ParseOptions(delimiter=delimiter),
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
        names = reader.schema.names
        yield from reader
    except pa.ArrowInvalid as exc:
        raise IngestError(_explain_csv_error(str(exc), names)) from exc


def _explain_csv_error(message: str, names: list[str]) -> str:
    # pyarrow counts the header as row 1, so its row number is the file's line number
    # (unless quoted fields span lines).
    row = re.search(r"Row #(\d+): Expected (\d+) columns, got (\d+)", message)
    if row:
        line, expected, found = row.groups()
        return f"line {line}: expected {expected} fields, found {found}"
    # "In CSV column #3: CSV conversion error to int64: invalid value 'x'"
    match = re.search(r"column #(\d+): (.*)", message)
    if match and int(match.group(1)) < len(names):
        name = names[int(match.group(1))]
        return f"column {name!r}: {match.group(2)} (its type was inferred from the first rows)"
    return message


def _jsonl_batches(path: Path) -> Iterator[pa.RecordBatch]:
    reader = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=CSV_BLOCK_BYTES))
    yield from reader


def _parquet_batches(path: Path) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path).iter_batches(batch_size=PARQUET_BATCH_ROWS)


_READERS = {"csv": _csv_batches, "jsonl": _jsonl_batches, "parquet": _parquet_batches}


def ingest_file(source: Path, fmt: str, destination: Path) -> IngestResult:
    rows = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    missing: list[int] = []
    try:
        for batch in _READERS[fmt](source):
            if schema is None:
                schema = _storage_schema(batch.schema)
                writer = pq.ParquetWriter(destination, schema)
                missing = [0] * len(schema)
            elif batch.schema.names != schema.names:
                raise IngestError(f"the columns change after row {rows}: {batch.schema.names}")
            table = _cast(batch, schema, rows)
            assert writer is not None
            writer.write_table(table)
            for i, column in enumerate(table.columns):
                missing[i] += column.null_count
            rows += table.num_rows
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError) as exc:
        raise IngestError(str(exc)) from exc
    finally:
        if writer is not None:
            writer.close()
    if schema is None or rows == 0:
        raise IngestError("the file holds no data rows")
    columns = [
        {"name": f.name, "dtype": _dtype_of(f.type), "missing": missing[i]}
        for i, f in enumerate(schema)
    ]
    return IngestResult(rows=rows, columns=columns)


def _cast(batch: pa.RecordBatch, schema: pa.Schema, first_row: int) -> pa.Table:
    arrays = []
    for field, column in zip(schema, batch.columns, strict=True):
        try:
            arrays.append(column.cast(field.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise IngestError(
                f"column {field.name!r} after row {first_row}: cannot read as {field.type}: {exc}"
            ) from exc
    return pa.Table.from_arrays(arrays, schema=schema)

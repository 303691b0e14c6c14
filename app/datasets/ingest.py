"""Convert an uploaded file to Parquet batch by batch, inferring the column schema.

Memory stays bounded by one record batch whatever the file size.
"""

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.json as pajson
import pyarrow.parquet as pq

from app.datasets.formats import sniff_delimiter

# Types are inferred from the first 4 MiB, then the file streams in 1 MiB blocks: the
# reader's peak memory grows with its block size (about 16 blocks in flight), and
# these two keep a worker's growth near 100 MB whatever the file size.
INFER_BYTES = 4 * 1024 * 1024
BLOCK_BYTES = 1024 * 1024
PARQUET_BATCH_ROWS = 65_536
ROW_GROUP_ROWS = 65_536


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


def _csv_batches(path: Path, sizes: tuple[int, int]) -> Iterator[pa.RecordBatch]:
    infer_bytes, block_bytes = sizes
    with path.open("rb") as handle:
        delimiter = sniff_delimiter(handle.read(64 * 1024))
    parse_options = pacsv.ParseOptions(delimiter=delimiter)
    read_options = pacsv.ReadOptions(block_size=block_bytes, use_threads=True)
    names: list[str] = []
    types: list[pa.DataType] = []
    rows = 0
    try:
        inference = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=infer_bytes, use_threads=False),
            parse_options=parse_options,
            convert_options=pacsv.ConvertOptions(strings_can_be_null=True),
        )
        names = inference.schema.names
        # A column empty in the sample has no type yet: text takes anything later.
        types = [pa.string() if pa.types.is_null(t) else t for t in inference.schema.types]
        # Dropped, not just closed: a closed reader still holds its read-ahead blocks.
        inference.close()
        del inference
        reader = pacsv.open_csv(
            path,
            read_options=read_options,
            parse_options=parse_options,
            convert_options=pacsv.ConvertOptions(
                column_types=dict(zip(names, types, strict=True)), strings_can_be_null=True
            ),
        )
        for batch in reader:
            rows += batch.num_rows
            yield batch
    except pa.ArrowInvalid as exc:
        message = str(exc)
        if "Expected" in message and "Row #" not in message:
            # Parallel parsing loses row numbers; a serial pass finds the line again.
            message = _serial_parse_error(path, block_bytes, parse_options, names) or message
        column = re.search(r"column #(\d+): ", message)
        if column and int(column.group(1)) < len(names):
            index = int(column.group(1))
            found = _locate_bad_value(
                path, read_options, parse_options, names, index, types[index], rows
            )
            if found:
                raise IngestError(found) from exc
        raise IngestError(_explain_csv_error(message, names)) from exc


def _serial_parse_error(
    path: Path, block_bytes: int, parse_options: pacsv.ParseOptions, names: list[str]
) -> str | None:
    as_text = pacsv.ConvertOptions(column_types=dict.fromkeys(names, pa.string()))
    try:
        for _ in pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=block_bytes, use_threads=False),
            parse_options=parse_options,
            convert_options=as_text,
        ):
            pass
    except pa.ArrowInvalid as exc:
        return str(exc)
    return None


def _locate_bad_value(
    path: Path,
    read_options: pacsv.ReadOptions,
    parse_options: pacsv.ParseOptions,
    names: list[str],
    index: int,
    inferred: pa.DataType,
    start_row: int,
) -> str | None:
    """Find the line whose value broke the column's inferred type.

    pyarrow names only the column; a second streaming pass reads everything as
    text from the failing block on and bisects a batch with vectorised casts.
    """
    as_text = pacsv.ConvertOptions(
        column_types=dict.fromkeys(names, pa.string()), strings_can_be_null=True
    )
    reader = pacsv.open_csv(
        path, read_options=read_options, parse_options=parse_options, convert_options=as_text
    )
    row = 0
    for batch in reader:
        if row + batch.num_rows <= start_row:
            row += batch.num_rows
            continue
        values = batch.column(index)
        if _casts(values, inferred):
            row += batch.num_rows
            continue
        low, high = 0, len(values)  # the first bad value lies in [low, high)
        while high - low > 1:
            middle = (low + high) // 2
            if _casts(values.slice(low, middle - low), inferred):
                low = middle
            else:
                high = middle
        line = row + low + 2  # the header is line 1
        value = values[low].as_py()
        return (
            f"line {line}: column {names[index]!r}: cannot read {value!r} as "
            f"{_dtype_of(inferred)}, the type inferred from the first rows"
        )
    return None


def _casts(values: pa.Array, target: pa.DataType) -> bool:
    try:
        values.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return False
    return True


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


def _jsonl_batches(path: Path, sizes: tuple[int, int]) -> Iterator[pa.RecordBatch]:
    infer_bytes, block_bytes = sizes
    inference = pajson.open_json(path, read_options=pajson.ReadOptions(block_size=infer_bytes))
    schema = inference.schema
    inference.close()
    del inference
    reader = pajson.open_json(
        path,
        read_options=pajson.ReadOptions(block_size=block_bytes),
        parse_options=pajson.ParseOptions(explicit_schema=schema),
    )
    yield from reader


def _parquet_batches(path: Path, _sizes: tuple[int, int]) -> Iterator[pa.RecordBatch]:
    yield from pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=PARQUET_BATCH_ROWS)


_READERS: dict[str, Callable[[Path, tuple[int, int]], Iterator[pa.RecordBatch]]] = {
    "csv": _csv_batches,
    "jsonl": _jsonl_batches,
    "parquet": _parquet_batches,
}


def ingest_file(
    source: Path,
    fmt: str,
    destination: Path,
    *,
    infer_bytes: int = INFER_BYTES,
    block_bytes: int = BLOCK_BYTES,
) -> IngestResult:
    rows = 0
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    missing: list[int] = []
    # Small read blocks are gathered into row groups of a useful size before writing.
    pending: list[pa.Table] = []
    pending_rows = 0
    try:
        for batch in _READERS[fmt](source, (infer_bytes, block_bytes)):
            if schema is None:
                schema = _storage_schema(batch.schema)
                writer = pq.ParquetWriter(destination, schema)
                missing = [0] * len(schema)
            elif batch.schema.names != schema.names:
                raise IngestError(f"the columns change after row {rows}: {batch.schema.names}")
            table = _cast(batch, schema, rows)
            for i, column in enumerate(table.columns):
                missing[i] += column.null_count
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

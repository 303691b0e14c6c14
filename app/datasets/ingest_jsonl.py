"""JSON Lines to record batches, with errors that name the file's line.

pyarrow reports a row number within its block ("in row 19498") and words a syntax
error as a type change. After a failure, the lines from the first row not yet read
are parsed again in chunks, and the smallest failing prefix of a failing chunk is
bisected down to one line, which Python's json module then describes.
"""

import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.json as pajson

from app.datasets.ingest_error import (
    FLOAT32_MAX,
    IngestError,
    grown_block,
    is_straddle,
    out_of_range,
    row_too_long,
    rows_after,
    short,
)
from app.datasets.line_numbers import jsonl_lines, jsonl_row_line


def jsonl_batches(path: Path, sizes: tuple[int, int]) -> Iterator[pa.RecordBatch]:
    infer_bytes, block_bytes = sizes
    schema = _infer(path, infer_bytes)
    # A field the first rows lack would change the columns midway; it fails its line.
    parse_options = pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
    rows = 0
    while True:
        try:
            reader = pajson.open_json(
                path,
                read_options=pajson.ReadOptions(block_size=block_bytes),
                parse_options=parse_options,
            )
            for batch in rows_after(reader, skip=rows):
                rows += batch.num_rows
                yield batch
            return
        except pa.ArrowInvalid as exc:
            if is_straddle(exc):
                grown = grown_block(block_bytes)
                if grown is None:
                    where = (
                        f"after line {jsonl_row_line(path, rows - 1)}"
                        if rows
                        else "in the first rows"
                    )
                    raise row_too_long(where) from exc
                block_bytes = grown
                continue
            raise IngestError(
                locate_jsonl_error(path, rows, schema, str(exc), block_bytes)
            ) from exc


def _infer(path: Path, infer_bytes: int) -> pa.Schema:
    while True:
        try:
            inference = pajson.open_json(
                path, read_options=pajson.ReadOptions(block_size=infer_bytes)
            )
        except pa.ArrowInvalid as exc:
            if is_straddle(exc):
                grown = grown_block(infer_bytes)
                if grown is None:
                    raise row_too_long("in the first rows") from exc
                infer_bytes = grown
                continue
            # Chunks as large as the failed block: types are then inferred over the
            # same rows pyarrow saw together.
            raise IngestError(locate_jsonl_error(path, 0, None, str(exc), infer_bytes)) from exc
        schema = inference.schema
        inference.close()
        del inference
        return schema


def locate_jsonl_error(
    path: Path, start_row: int, schema: pa.Schema | None, fallback: str, chunk_bytes: int
) -> str:
    """The first line from data row `start_row` on that pyarrow refuses, described."""
    lines = jsonl_lines(path, start_row)
    while True:
        chunk: list[tuple[int, bytes]] = []
        size = 0
        for number, line in lines:
            chunk.append((number, line))
            size += len(line) + 1
            if size >= chunk_bytes:
                break
        if not chunk:
            return _without_block_row(fallback)
        failing = _first_failing_line(chunk, schema)
        if failing is not None:
            number, line, message = failing
            return f"line {number}: {_describe(line, number == 1, schema, message)}"
        if schema is None:
            schema = _parse([line for _, line in chunk], None).schema


def _without_block_row(message: str) -> str:
    # The row number pyarrow gives counts from the start of a block, not the file.
    return re.sub(r"\s*in row \d+$", "", message)


def _parse(lines: list[bytes], schema: pa.Schema | None) -> pa.Table:
    data = b"\n".join(lines) + b"\n"
    options = (
        pajson.ParseOptions(explicit_schema=schema, unexpected_field_behavior="error")
        if schema is not None
        else pajson.ParseOptions()
    )
    return pajson.read_json(
        io.BytesIO(data),
        read_options=pajson.ReadOptions(block_size=len(data) + 1, use_threads=False),
        parse_options=options,
    )


def _error_of(lines: list[bytes], schema: pa.Schema | None) -> str | None:
    try:
        _parse(lines, schema)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return str(exc)
    return None


def _first_failing_line(
    chunk: list[tuple[int, bytes]], schema: pa.Schema | None
) -> tuple[int, bytes, str] | None:
    lines = [line for _, line in chunk]
    message = _error_of(lines, schema)
    if message is None:
        return None
    # A longer prefix fails whenever a shorter one does: bisect for the shortest.
    low, high = 0, len(lines)  # lines[:low] parses, lines[:high] fails
    while high - low > 1:
        middle = (low + high) // 2
        error = _error_of(lines[:middle], schema)
        if error is None:
            low = middle
        else:
            high, message = middle, error
    number, line = chunk[high - 1]
    return number, line, message


_JSON_KINDS = {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return "a number"
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _describe(line: bytes, first: bool, schema: pa.Schema | None, arrow_message: str) -> str:
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"not UTF-8 text (byte {line[exc.start]:#04x} at column {exc.start + 1})"
    if first and text.lstrip().startswith("["):
        # A JSON document holding an array, pretty-printed or on one line.
        return (
            "the file is one JSON array, but JSON Lines holds one object per line "
            "(convert it with: jq -c '.[]' file.json > file.jsonl)"
        )
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"invalid JSON at character {exc.colno}: {exc.msg}"
    if not isinstance(record, dict):
        return f"each line must hold one JSON object, this one holds {_kind(record)}"
    for key, value in record.items():
        problem = _field_problem(key, value, schema)
        if problem:
            return problem
    changed = re.search(r"Column\(/([^)]*)\) changed from (\w+) to (\w+)", arrow_message)
    if changed:
        field, before, _ = changed.groups()
        if field in record:
            return (
                f"field {field!r}: cannot read {short(record[field])} as {before}, "
                "the type of the earlier lines"
            )
    return _without_block_row(arrow_message)


def _field_problem(key: str, value: object, schema: pa.Schema | None) -> str | None:
    # NaN is a missing value (counted as such later); only magnitudes are refused.
    if isinstance(value, float) and abs(value) > FLOAT32_MAX:
        return f"field {key!r}: {out_of_range(value)}"
    if schema is None or value is None:
        return None
    if key not in schema.names:
        columns = ", ".join(repr(n) for n in schema.names[:20])
        return (
            f"field {key!r} is not one of the columns found in the first rows ({columns}); "
            "every field must appear in the first 4 MiB of the file"
        )
    expected = schema.field(key).type
    if pa.types.is_null(expected):
        return (
            f"field {key!r} holds {_kind(value)} here but only nulls in the first rows, "
            "so it has no type; move a row with a value for it into the first 4 MiB"
        )
    fits = {
        "bool": isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "float": isinstance(value, int | float) and not isinstance(value, bool),
        "string": isinstance(value, str),
    }
    wanted = _wanted(expected)
    if wanted in fits and not fits[wanted]:
        return (
            f"field {key!r}: cannot read {short(value)} as {wanted}, "
            "the type inferred from the first rows"
        )
    return None


def _wanted(arrow_type: pa.DataType) -> str:
    if pa.types.is_boolean(arrow_type):
        return "bool"
    if pa.types.is_integer(arrow_type):
        return "int"
    if pa.types.is_floating(arrow_type):
        return "float"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type):
        return "string"
    return str(arrow_type)

"""What every ingest reader shares: its error and the bounds on how it reads."""

import math
from collections.abc import Iterable, Iterator

import pyarrow as pa

# Types are inferred from the first 4 MiB. A CSV is then parsed in segments
# (`ingest_csv.SEGMENT_BYTES`); JSON Lines, and a CSV whose segment failed, stream in
# 1 MiB blocks: the reader's peak memory grows with its block size (about 16 blocks in
# flight), and these keep a worker's growth near 100 MB whatever the file size.
INFER_BYTES = 4 * 1024 * 1024
BLOCK_BYTES = 1024 * 1024
# A record must fit in one block, so a file with a longer one is read again with
# larger blocks (serially, one block in flight), up to this bound on a single row.
MAX_BLOCK_BYTES = 64 * 1024 * 1024


# Training runs in float32: a larger magnitude becomes infinity there and the model
# diverges, so ingest refuses it rather than let a job fail without naming the column.
FLOAT32_MAX = 3.4028234663852886e38


class IngestError(ValueError):
    """The file is not a usable table; the message names the line or column at fault."""


def is_straddle(exc: Exception) -> bool:
    # pyarrow's words when one record is longer than its block.
    return "straddl" in str(exc)


def grown_block(block_bytes: int) -> int | None:
    """The next block size after a record straddled two blocks, or None past the bound."""
    if block_bytes >= MAX_BLOCK_BYTES:
        return None
    return min(block_bytes * 4, MAX_BLOCK_BYTES)


def rows_after(batches: Iterable[pa.RecordBatch], skip: int) -> Iterator[pa.RecordBatch]:
    """The batches past the first `skip` rows: a read restarted with larger blocks starts
    from the top of the file again, and the rows already passed on must not repeat."""
    for batch in batches:
        if skip >= batch.num_rows:
            skip -= batch.num_rows
            continue
        if skip:
            batch, skip = batch.slice(skip), 0
        yield batch


def row_too_long(where: str) -> IngestError:
    return IngestError(
        f"{where}: a row is longer than {MAX_BLOCK_BYTES // (1024 * 1024)} MiB, the most "
        "one row may hold; split the long values or drop that column"
    )


def short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def out_of_range(value: float) -> str:
    """Why a float is refused; every format words it the same way."""
    if math.isinf(value):
        return (
            f"{value} is infinite (inf, -inf, or a number beyond ±1.8e308); "
            "leave the value empty for missing, or give a finite number"
        )
    return (
        f"{value!r} is beyond ±3.4e38, the float32 range training runs in; "
        "rescale the column (e.g. to other units or a logarithm)"
    )

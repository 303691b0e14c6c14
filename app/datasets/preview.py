"""The first rows of an ingested dataset, as JSON-safe records."""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


@dataclass(frozen=True)
class Preview:
    rows: list[dict[str, Any]]
    total_rows: int


def _json_safe(value: Any) -> Any:
    # JSON has no NaN or infinity: a missing or non-finite float shows as null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_preview(path: Path, limit: int) -> Preview:
    """Reads only the first record batch, however large the file."""
    parquet = pq.ParquetFile(path, pre_buffer=False)
    batch = next(parquet.iter_batches(batch_size=limit), None)
    rows = [] if batch is None else batch.to_pylist()
    return Preview(
        rows=[{k: _json_safe(v) for k, v in row.items()} for row in rows],
        total_rows=parquet.metadata.num_rows,
    )

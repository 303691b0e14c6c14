"""Per-column statistics gathered while a file is ingested, batch by batch, in the one
pass that writes its Parquet: for numbers and booleans the least, greatest and mean
value; for text, how many distinct values (counted up to DISTINCT_CAP)."""

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

# As many as one-hot encoding keeps per text column: past it, "many" is what matters.
DISTINCT_CAP = 1000


class ColumnStats:
    def __init__(self, schema: pa.Schema) -> None:
        self._numeric = [not pa.types.is_string(f.type) and not pa.types.is_large_string(f.type)
                         for f in schema]  # fmt: skip
        self._low: list[float | None] = [None] * len(schema)
        self._high: list[float | None] = [None] * len(schema)
        self._sum = [0.0] * len(schema)
        self._count = [0] * len(schema)
        # None once a column has more than DISTINCT_CAP values: counting stops there.
        self._seen: list[set[str] | None] = [set() for _ in schema]

    def add(self, table: pa.Table) -> None:
        for i, column in enumerate(table.columns):
            if self._numeric[i]:
                self._add_numbers(i, column)
            else:
                self._add_text(i, column)

    def _add_numbers(self, i: int, column: pa.ChunkedArray) -> None:
        present = len(column) - column.null_count
        if present == 0:
            return
        numbers = column.cast(pa.float64())
        bounds = pc.min_max(numbers).as_py()
        low, high = self._low[i], self._high[i]
        self._low[i] = bounds["min"] if low is None else min(low, bounds["min"])
        self._high[i] = bounds["max"] if high is None else max(high, bounds["max"])
        self._sum[i] += float(pc.sum(numbers).as_py() or 0.0)
        self._count[i] += present

    def _add_text(self, i: int, column: pa.ChunkedArray) -> None:
        seen = self._seen[i]
        if seen is None:
            return
        seen.update(v for v in pc.unique(column.drop_null()).to_pylist())
        if len(seen) > DISTINCT_CAP:
            self._seen[i] = None

    def of(self, i: int) -> dict[str, Any]:
        if self._numeric[i]:
            count = self._count[i]
            # Twelve significant digits: the mean of the same rows read in other
            # batches (summed in another order) is then the same number.
            mean = float(f"{self._sum[i] / count:.12g}") if count else None
            return {"min": self._low[i], "max": self._high[i], "mean": mean}
        seen = self._seen[i]
        return {"distinct": len(seen) if seen is not None else None}

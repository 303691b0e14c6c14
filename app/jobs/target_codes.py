"""A classification target's classes counted and looked up in Arrow, for sharding:
a Python object per row (`to_pylist`) cost more than the rest of encoding 800k rows.
The training core stays free of Arrow; these give it counts and indices."""

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def class_counts(column: pa.Array | pa.ChunkedArray) -> dict[Any, int]:
    """How often each non-null class occurs."""
    counts: dict[Any, int] = {}
    for entry in pc.value_counts(column.drop_null()).to_pylist():
        counts[entry["values"]] = entry["counts"]
    return counts


def class_indices(column: pa.Array | pa.ChunkedArray, classes: list[Any]) -> np.ndarray | None:
    """Each value's position in `classes` as float32, -1 for a missing value or a class
    unseen in training; None where Arrow cannot compare the two types, for the caller
    to look them up in Python."""
    try:
        known = pa.array(classes, type=column.type)
        found = pc.index_in(column, value_set=known)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    indices: np.ndarray = pc.fill_null(found, -1).to_numpy(zero_copy_only=False)
    return indices.astype(np.float32)

"""Arrow record batches to the column arrays the preprocessing takes."""

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def feature_columns(
    batch: pa.RecordBatch | pa.Table, dtypes: dict[str, str]
) -> dict[str, np.ndarray]:
    """Numeric columns as float64 with NaN for missing; text as object arrays with None."""
    columns: dict[str, np.ndarray] = {}
    for name, dtype in dtypes.items():
        column = batch.column(name)
        if dtype == "string":
            columns[name] = column.to_numpy(zero_copy_only=False)
        else:
            columns[name] = pc.cast(column, pa.float64()).to_numpy(zero_copy_only=False)
    return columns

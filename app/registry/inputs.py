"""Turn raw prediction inputs (JSON records, or an Arrow table) into typed columns,
naming any field at fault."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.training.preprocessing import Preprocessor

# Types a numeric column accepts; None is a missing value, imputed as in training.
_NUMERIC_TYPES = frozenset({float, int, bool, type(None)})


class InputError(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


def records_to_columns(
    records: Sequence[dict[str, Any]], preprocessor: Preprocessor
) -> dict[str, np.ndarray]:
    numeric = {f.name for f in preprocessor.numeric}
    columns: dict[str, np.ndarray] = {}
    for name in preprocessor.columns:
        try:
            values = [record[name] for record in records]
        except KeyError:
            values = None
        fast = _fast_column(values, name in numeric)
        columns[name] = fast if fast is not None else _checked_column(records, name, numeric)
    return columns


def _fast_column(values: list[Any] | None, is_numeric: bool) -> np.ndarray | None:
    """The whole column at C speed when every value has an accepted type; None sends
    the column through the row-by-row path, which names the first bad row."""
    if values is None:
        return None
    kinds = set(map(type, values))
    if is_numeric:
        # numpy turns None into NaN for a float array, the same as _numeric below.
        if not kinds <= _NUMERIC_TYPES:
            return None
        try:
            return np.array(values, dtype=np.float64)
        except OverflowError:  # an integer past float64's range; named row by row
            return None
    if kinds <= {str, type(None)}:
        column = np.empty(len(values), dtype=object)
        column[:] = values
        return column
    return None


def _checked_column(records: Sequence[dict[str, Any]], name: str, numeric: set[str]) -> np.ndarray:
    is_numeric = name in numeric
    values = np.empty(len(records), dtype=np.float64 if is_numeric else object)
    for row, record in enumerate(records):
        if name not in record:
            raise InputError(f"inputs.{row}.{name}", f"inputs[{row}] is missing column {name!r}")
        values[row] = _numeric(record[name], name, row) if is_numeric else _text(record[name])
    return values


def _numeric(value: Any, name: str, row: int) -> float:
    if value is None:
        return math.nan  # imputed like a missing training value
    if isinstance(value, bool | int | float):
        try:
            return float(value)
        except OverflowError:
            raise InputError(
                f"inputs.{row}.{name}", f"inputs[{row}].{name} is too large for a float"
            ) from None
    raise InputError(
        f"inputs.{row}.{name}",
        f"inputs[{row}].{name} must be a number or null, not {type(value).__name__}",
    )


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # A category given as a number (e.g. a zip code) matches its text form.
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


ARROW_STREAM = "application/vnd.apache.arrow.stream"


def read_arrow_stream(raw: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(raw).read_all()
    except (pa.ArrowException, ValueError) as exc:
        raise InputError("inputs", f"the body is not an Arrow IPC stream ({exc})") from None


def table_to_features(table: pa.Table, dtypes: dict[str, str]) -> pa.RecordBatch:
    """The model's feature columns of `table`, one record batch, each column of a type
    the dtype accepts: the same rules as JSON records (numbers, booleans or null for
    numeric features; text, or numbers and booleans as their text, for the others)."""
    if table.num_rows == 0:
        raise InputError("inputs", "the table has no rows")
    columns = []
    for name, dtype in dtypes.items():
        if name not in table.column_names:
            raise InputError(f"inputs.{name}", f"the table is missing column {name!r}")
        column = table.column(name)
        kind = column.type
        numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind)
        numeric = numeric or pa.types.is_boolean(kind) or pa.types.is_null(kind)
        text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
        if dtype == "string" and not text:
            if not numeric:
                raise InputError(f"inputs.{name}", f"column {name!r} must be text, not {kind}")
            column = pc.cast(column, pa.string())
        elif dtype != "string" and not numeric:
            raise InputError(
                f"inputs.{name}", f"column {name!r} must be numbers, booleans or null, not {kind}"
            )
        columns.append(column)
    return pa.Table.from_arrays(columns, names=list(dtypes)).combine_chunks().to_batches()[0]

"""Turn raw prediction inputs (JSON records, or an Arrow table) into typed columns,
naming any field at fault."""

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from app.training.preprocessing import Preprocessor

# Types a numeric column accepts; None is a missing value, imputed as in training.
_NUMERIC_TYPES = frozenset({float, int, bool, type(None)})
# The network computes in float32: a feature past this, before or after standardizing,
# would reach it as Infinity and come out as NaN or Infinity.
FLOAT32_MAX = float(np.finfo(np.float32).max)


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
            column = np.array(values, dtype=np.float64)
        except OverflowError:  # an integer past float64's range; named row by row
            return None
        # NaN here is either a null (a missing value) or a NaN/Infinity the JSON
        # parser let through; only the nulls may pass.
        not_finite = np.flatnonzero(~np.isfinite(column))
        if any(values[i] is not None for i in not_finite.tolist()):
            return None
        return column
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
        value = record[name]
        values[row] = _numeric(value, name, row) if is_numeric else _text(value, name, row)
    return values


def _numeric(value: Any, name: str, row: int) -> float:
    if value is None:
        return math.nan  # imputed like a missing training value
    if isinstance(value, bool | int | float):
        try:
            number = float(value)
        except OverflowError:
            raise InputError(
                f"inputs.{row}.{name}", f"inputs[{row}].{name} is too large for a float"
            ) from None
        _refuse_non_finite(number, name, row)
        return number
    raise InputError(
        f"inputs.{row}.{name}",
        f"inputs[{row}].{name} must be a number or null, not {_json_kind(value)}",
    )


def _text(value: Any, name: str, row: int) -> str | None:
    if value is None or isinstance(value, str):
        return value
    # A category given as a number (e.g. a zip code) matches its text form.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        _refuse_non_finite(value, name, row)
    if isinstance(value, int | float):
        return str(value)
    raise InputError(
        f"inputs.{row}.{name}",
        f"inputs[{row}].{name} must be text, a number, a boolean or null, not {_json_kind(value)}",
    )


def _refuse_non_finite(number: float, name: str, row: int) -> None:
    if math.isfinite(number):
        return
    message = f"inputs[{row}].{name} must be a finite number, not {_json_number(number)}"
    if math.isinf(number):
        # 1e309 parses to Infinity: say so, or the message names a value never sent.
        message += " (a number past 1.8e308 reads as Infinity)"
    raise InputError(f"inputs.{row}.{name}", message)


def _json_number(number: float) -> str:
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _json_kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def check_feature_range(
    columns: Mapping[str, np.ndarray], preprocessor: Preprocessor, *, first_row: int = 0
) -> None:
    """Refuse a numeric value the float32 network cannot take: past float32's range as
    given, or after standardizing by the training mean and std (a value far off the
    training data with a small std). NaN is a missing value here, imputed later."""
    for spec in preprocessor.numeric:
        values = np.asarray(columns[spec.name], dtype=np.float64)
        with np.errstate(over="ignore", invalid="ignore"):
            scaled = (values - spec.mean) / spec.std
        raw_too_large = np.abs(values) > FLOAT32_MAX
        too_large = raw_too_large | (np.abs(scaled) > FLOAT32_MAX)
        if not too_large.any():
            continue
        row = int(np.argmax(too_large))
        value = float(values[row])
        field = f"inputs[{first_row + row}].{spec.name}"
        if not math.isfinite(value):
            message = f"{field} must be a finite number, not {_json_number(value)}"
        elif raw_too_large[row]:
            message = (
                f"{field} is {value:g}, outside the model's float32 range "
                f"(at most {FLOAT32_MAX:.4g} in magnitude)"
            )
        else:
            message = (
                f"{field} is {value:g}: standardized by the training mean {spec.mean:g} "
                f"and std {spec.std:g} it is past the model's float32 range "
                f"({FLOAT32_MAX:.4g})"
            )
        raise InputError(f"inputs.{first_row + row}.{spec.name}", message)


ARROW_STREAM = "application/vnd.apache.arrow.stream"


def read_arrow_stream(raw: bytes) -> pa.Table:
    try:
        return pa.ipc.open_stream(raw).read_all()
    # A body cut short inside a message raises a plain OSError ("Expected to be able to
    # read N bytes for message body"), not an ArrowException.
    except (pa.ArrowException, ValueError, OSError) as exc:
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
        # table.column(name) raises KeyError on a duplicated name, which is a 500.
        copies = len(table.schema.get_all_field_indices(name))
        if copies > 1:
            raise InputError(f"inputs.{name}", f"column {name!r} appears {copies} times")
        column = table.column(name)
        kind = column.type
        if pa.types.is_floating(kind):
            _refuse_non_finite_column(column, name)
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


def _refuse_non_finite_column(column: pa.ChunkedArray, name: str) -> None:
    """NaN and Infinity refused as in JSON records; a null is a missing value. In numpy
    on each chunk's own buffer: Arrow's is_finite and index cost a tenth of a
    millisecond a call in overhead, most of a prediction's time at 50 columns."""
    offset = 0
    for chunk in column.chunks:
        # Zero-copy without nulls; with nulls, a copy in which each null reads as NaN.
        values = chunk.to_numpy(zero_copy_only=False)
        bad = ~np.isfinite(values)
        if chunk.null_count:
            bad &= chunk.is_valid().to_numpy(zero_copy_only=False)
        if bad.any():
            row = int(np.argmax(bad))
            _refuse_non_finite(float(values[row]), name, offset + row)
        offset += len(chunk)

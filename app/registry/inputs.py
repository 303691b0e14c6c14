"""Turn raw prediction records into typed column arrays, naming any field at fault."""

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from app.training.preprocessing import Preprocessor


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
        is_numeric = name in numeric
        values = np.empty(len(records), dtype=np.float64 if is_numeric else object)
        for row, record in enumerate(records):
            if name not in record:
                raise InputError(
                    f"inputs.{row}.{name}", f"inputs[{row}] is missing column {name!r}"
                )
            values[row] = _numeric(record[name], name, row) if is_numeric else _text(record[name])
        columns[name] = values
    return columns


def _numeric(value: Any, name: str, row: int) -> float:
    if value is None:
        return math.nan  # imputed like a missing training value
    if isinstance(value, bool | int | float):
        return float(value)
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

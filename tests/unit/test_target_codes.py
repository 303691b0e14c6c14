"""Classes counted and looked up in Arrow give what the training core's Python lookup
gives, for every target dtype, with -1 for a missing or unseen class."""

import numpy as np
import pyarrow as pa
import pytest

from app.jobs.target_codes import class_counts, class_indices
from app.training.preprocessing import Preprocessor, TargetEncoding


def encoder(classes: list[object]) -> Preprocessor:
    return Preprocessor([], [], TargetEncoding("y", "x", "classification", classes=classes))


@pytest.mark.parametrize(
    ("values", "classes"),
    [
        ([3, 1, None, 3, 7, 1], [1, 3]),
        (["cat", "dog", None, "emu", "cat"], ["cat", "dog"]),
        ([True, False, None, True], [False, True]),
        ([0.5, 1.5, 0.5, None], [0.5, 1.5]),
    ],
)
def test_indices_and_counts_match_the_python_lookup(
    values: list[object], classes: list[object]
) -> None:
    column = pa.array(values)
    expected = encoder(classes).encode_target(np.array(values, dtype=object))
    found = class_indices(column, classes)
    assert found is not None and found.dtype == np.float32
    np.testing.assert_array_equal(found, expected)
    assert class_counts(column) == {v: values.count(v) for v in set(values) if v is not None}


def test_types_arrow_cannot_compare_are_left_to_python() -> None:
    assert class_indices(pa.array(["a", "b"]), [1, 2]) is None

"""A linear model's weights by raw column name: what a user of scikit-learn's `coef_`
reads, with each one-hot slot named by its column and category."""

from typing import Any

import numpy as np
import torch

from app.training.preprocessing import Preprocessor

LINEAR = frozenset({"logistic_regression", "linear_regression"})
# A text column of 1 000 categories under 10 classes is 10 000 weights: the largest
# this many are kept, which is what a reader looks at.
MAX_COEFFICIENTS = 1000


def encoded_slots(preprocessor: Preprocessor) -> list[tuple[str, str | None]]:
    """(column, category) of each input of the network, in the order `transform`
    writes them: a numeric column's one slot, then a text column's categories."""
    categorical = {f.name: f for f in preprocessor.categorical}
    slots: list[tuple[str, str | None]] = []
    for name in preprocessor.columns:
        if name in categorical:
            slots += [(name, category) for category in categorical[name].categories]
        else:
            slots.append((name, None))
    return slots


def linear_coefficients(
    model_type: str, state: dict[str, torch.Tensor], preprocessor: Preprocessor
) -> list[dict[str, Any]] | None:
    """Each weight of a linear model: its column, category (text columns), class
    (classification) and value, on the standardized features (and, for a regression,
    the standardized target); the largest MAX_COEFFICIENTS by magnitude, largest first.
    None for any other model, and for one whose weights are not all finite."""
    if model_type not in LINEAR or "0.weight" not in state:
        return None
    weights = state["0.weight"].detach().to(torch.float64).numpy()
    slots = encoded_slots(preprocessor)
    classes = preprocessor.target.classes
    # A model that diverged has no weights worth reading (and JSON holds no NaN).
    if weights.shape[1] != len(slots) or not np.isfinite(weights).all():
        return None
    rows: list[dict[str, Any]] = []
    for output in range(weights.shape[0]):
        label = (
            classes[output] if classes is not None and len(classes) == weights.shape[0] else None
        )
        for slot, (column, category) in enumerate(slots):
            rows.append(
                {"feature": column, "category": category, "class": label,
                 "weight": float(weights[output, slot])}
            )  # fmt: skip
    order = np.argsort(-np.abs(weights).ravel(), kind="stable")
    return [rows[i] for i in order[:MAX_COEFFICIENTS]]

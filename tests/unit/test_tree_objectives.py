"""The boosting losses: gradients are the loss's derivatives (checked by finite
differences), the base score is the best constant, and predictions are what the task
reports."""

import numpy as np
import pytest

from app.training.trees.objectives import Objective, objective_for

CASES = [
    (objective_for("regression", 0), np.array([0.5, -1.0, 2.0, 3.5])),
    (objective_for("classification", 2), np.array([0.0, 1.0, 1.0, 0.0])),
    (objective_for("classification", 3), np.array([0.0, 2.0, 1.0, 2.0])),
]


@pytest.mark.parametrize(("objective", "targets"), CASES, ids=lambda c: getattr(c, "name", ""))
def test_gradients_are_the_losss_derivatives(objective: Objective, targets: np.ndarray) -> None:
    raw = np.random.default_rng(0).normal(size=(len(targets), objective.outputs))
    gradients, hessians = objective.gradients(raw, targets)
    step = 1e-5
    for row in range(len(targets)):
        for output in range(objective.outputs):
            bump = np.zeros_like(raw)
            bump[row, output] = step
            # `loss` is a mean over rows; a row's own loss is n times its share.
            up = objective.loss(raw + bump, targets) * len(targets)
            down = objective.loss(raw - bump, targets) * len(targets)
            middle = objective.loss(raw, targets) * len(targets)
            assert gradients[row, output] == pytest.approx((up - down) / (2 * step), abs=1e-5)
            second = (up - 2 * middle + down) / step**2
            # Softmax's hessian is the doubled diagonal, as in XGBoost and LightGBM.
            scale = 2.0 if objective.name == "softmax" else 1.0
            assert hessians[row, output] == pytest.approx(scale * second, rel=1e-3, abs=1e-4)


@pytest.mark.parametrize(("objective", "targets"), CASES, ids=lambda c: getattr(c, "name", ""))
def test_the_base_score_is_the_best_constant(objective: Objective, targets: np.ndarray) -> None:
    base = objective.base_score(targets)
    at_base = objective.loss(np.tile(base, (len(targets), 1)), targets)
    rng = np.random.default_rng(1)
    for _ in range(20):
        moved = base + 0.1 * rng.normal(size=base.shape)
        assert objective.loss(np.tile(moved, (len(targets), 1)), targets) >= at_base - 1e-12


def test_predictions_are_values_or_probabilities() -> None:
    raw = np.array([[0.0, 1.0, -1.0], [2.0, 2.0, 2.0]])
    probabilities = objective_for("classification", 3).predict(raw)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    assert probabilities[1] == pytest.approx([1 / 3] * 3)
    assert objective_for("classification", 2).predict(np.array([[0.0]]))[0, 0] == 0.5
    np.testing.assert_array_equal(objective_for("regression", 0).predict(raw[:, :1]), raw[:, :1])

"""The losses trees are boosted on: first and second derivatives of each row's loss
with respect to its raw scores, the constant score the first tree starts from, and
the map from raw scores to predictions.

Squared error regresses; logistic classifies two classes with one output; softmax
classifies K classes with one output, and so one tree, per class per iteration.
Hessians are floored so a confident row never divides a leaf by zero.
"""

from dataclasses import dataclass

import numpy as np

HESSIAN_FLOOR = 1e-16


@dataclass(frozen=True)
class Objective:
    name: str
    outputs: int

    def base_score(self, targets: np.ndarray) -> np.ndarray:
        """Raw scores (outputs,) that minimise the loss of a constant model."""
        if self.name == "squared_error":
            return self.constant_score(float(targets.mean()), [])
        return self.constant_score(
            0.0, np.bincount(targets.astype(np.int64), minlength=max(self.outputs, 2)).tolist()
        )

    def constant_score(self, target_mean: float, class_counts: list[int]) -> np.ndarray:
        """`base_score` from a summary of the targets, as prepare gathers it while
        streaming: the mean (regression) or the count of each class."""
        if self.name == "squared_error":
            return np.array([target_mean])
        counts = np.asarray(class_counts, np.float64)
        if self.name == "logistic":
            rate = np.clip(counts[1] / counts.sum(), 1e-6, 1 - 1e-6)
            return np.array([np.log(rate / (1 - rate))])
        frequencies = np.clip(counts / counts.sum(), 1e-6, None)
        return np.log(frequencies) - np.log(frequencies).mean()

    def served(self, raw: np.ndarray) -> np.ndarray:
        """What the service answers: the value (n,) for regression, every class's
        probability (n, k) for classification, the binary case included."""
        predictions = self.predict(raw)
        if self.name == "squared_error":
            return predictions[:, 0]
        if self.name == "logistic":
            return np.hstack([1 - predictions, predictions])
        return predictions

    def gradients(self, raw: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-row gradients and hessians, (rows, outputs) each."""
        if self.name == "squared_error":
            return raw - targets[:, None], np.ones_like(raw)
        probabilities = self.predict(raw)
        if self.name == "logistic":
            p = probabilities[:, :1]
            return p - targets[:, None], np.maximum(p * (1 - p), HESSIAN_FLOOR)
        one_hot = np.eye(self.outputs)[targets.astype(np.int64)]
        # The diagonal of the softmax hessian, doubled as XGBoost and LightGBM do.
        return probabilities - one_hot, np.maximum(
            2 * probabilities * (1 - probabilities), HESSIAN_FLOOR
        )

    def loss(self, raw: np.ndarray, targets: np.ndarray) -> float:
        if self.name == "squared_error":
            # Half the squared error, as XGBoost's, so the hessian is 1 and `l2` means
            # the same as there.
            return float(0.5 * np.mean((raw[:, 0] - targets) ** 2))
        if self.name == "logistic":
            z = raw[:, 0]
            return float(np.mean(np.logaddexp(0, z) - targets * z))
        shifted = raw - raw.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(shifted).sum(axis=1))
        return float(np.mean(log_norm - shifted[np.arange(len(targets)), targets.astype(np.int64)]))

    def predict(self, raw: np.ndarray) -> np.ndarray:
        """Squared error: the value. Logistic: P(class 1), one column. Softmax: every
        class's probability."""
        if self.name == "squared_error":
            return raw
        if self.name == "logistic":
            return 1 / (1 + np.exp(-raw))
        shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)


def objective_for(task: str, classes: int) -> Objective:
    if task == "regression":
        return Objective("squared_error", 1)
    if classes == 2:
        return Objective("logistic", 1)
    return Objective("softmax", classes)

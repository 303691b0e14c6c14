"""What the accuracy experiments share: the L2 that matches scikit-learn's, the local
training settings, the bundled datasets, the split and standardization, and the
holdout score of our model."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from app.training.loop import TrainConfig, evaluate
from app.training.networks import NetworkConfig
from app.training.protocol import StateDict
from app.training.split import HOLDOUT, assign_rows

SHARD_COUNTS = (1, 4, 8)
HOLDOUT_FRACTION = 0.2
FULL_BATCH = 1 << 30  # larger than any shard: one full-batch step per local epoch

# --- the equivalent L2 ------------------------------------------------------------
#
# Our loss is  mean_i loss_i + (l2 / 2) * sum(W**2)  (weights only, biases free).
#
# LogisticRegression (lbfgs), multinomial with K >= 3 classes, minimizes
#     C * sum_i CE_i + (1/2) * sum(W**2)            over W of shape (K, p).
# Dividing by C * n (which leaves the minimizer unchanged) gives
#     mean_i CE_i + (1 / (2 C n)) * sum(W**2),  so  l2 = 1 / (C n).
#
# For K = 2 scikit-learn fits one weight vector w with a sigmoid:
#     C * sum_i log-loss_i + (1/2) |w|^2.
# Our network has two softmax rows w0, w1 and only w = w1 - w0 matters. For a
# given w the penalty (l2/2)(|w0|^2 + |w1|^2) is smallest at w1 = -w0 = w/2,
# where it is (l2/4)|w|^2. Matching (l2/4)|w|^2 = |w|^2 / (2 C n) gives
#     l2 = 2 / (C n)   for binary problems.
#
# Ridge minimizes  sum_i (y_i - x_i.w - b)^2 + alpha |w|^2.  Dividing by n:
#     mean_i (y_i - ...)^2 + (alpha / n) |w|^2 = mean + (l2 / 2)|w|^2,
# so  l2 = 2 alpha / n.  We train on standardized targets (y - m) / s: the
# squared error and the optimal |w|^2 both scale by 1/s^2, so the same l2 gives
# the same minimizer in original units.
C = 1.0
ALPHA = 1.0


def logistic_l2(n_train: int, n_classes: int) -> float:
    return (2.0 if n_classes == 2 else 1.0) / (C * n_train)


def ridge_l2(n_train: int) -> float:
    return 2.0 * ALPHA / n_train


@dataclass(frozen=True)
class Setting:
    optimizer: str
    learning_rate: float
    batch_size: int
    local_epochs: int
    rounds: int

    def train_config(self, task: str, l2: float = 0.0) -> TrainConfig:
        return TrainConfig(
            task=task,
            optimizer=self.optimizer,
            learning_rate=self.learning_rate,
            batch_size=self.batch_size,
            local_epochs=self.local_epochs,
            l2=l2,
        )

    def describe(self) -> str:
        batch = "all" if self.batch_size >= FULL_BATCH else str(self.batch_size)
        return (
            f"{self.optimizer} lr={self.learning_rate:g} B={batch} "
            f"E={self.local_epochs} R={self.rounds}"
        )


@dataclass(frozen=True)
class Dataset:
    name: str
    task: str
    load: Callable[[], tuple[np.ndarray, np.ndarray]]
    setting: Setting
    # A second, minibatch run (several local steps per round, so the shard
    # count matters); reported in its own table, not used for the targets.
    minibatch: Setting | None = None


def bundled(loader: Callable[..., Any]) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def load() -> tuple[np.ndarray, np.ndarray]:
        x, y = loader(return_X_y=True)
        return np.asarray(x, dtype=np.float64), np.asarray(y)

    return load


@dataclass
class Prepared:
    features: np.ndarray  # standardized, float64
    targets: np.ndarray
    train: np.ndarray  # boolean mask
    holdout: np.ndarray
    target_scale: tuple[float, float]


def prepare(x: np.ndarray, y: np.ndarray, task: str, seed: int) -> Prepared:
    assignment = assign_rows(
        len(y), seed=seed, holdout_fraction=HOLDOUT_FRACTION, validation_fraction=0.0, shards=1
    )
    train, holdout = assignment >= 0, assignment == HOLDOUT
    mean, std = x[train].mean(axis=0), x[train].std(axis=0)
    std[std == 0] = 1.0
    features = (x - mean) / std
    scale = (0.0, 1.0)
    if task == "regression":
        scale = (float(y[train].mean()), float(y[train].std()))
    return Prepared(features, y, train, holdout, scale)


def shards_of(
    data: Prepared, seed: int, n_shards: int, task: str
) -> list[tuple[np.ndarray, np.ndarray]]:
    # The same seed gives the same holdout at every shard count: assign_rows
    # permutes once and only then cuts the training rows into shards.
    assignment = assign_rows(
        len(data.targets),
        seed=seed,
        holdout_fraction=HOLDOUT_FRACTION,
        validation_fraction=0.0,
        shards=n_shards,
    )
    assert np.array_equal(assignment == HOLDOUT, data.holdout)
    mean, std = data.target_scale
    out = []
    for shard in range(n_shards):
        rows = assignment == shard
        y = data.targets[rows].astype(np.float64)
        if task == "regression":
            y = (y - mean) / std
        out.append((data.features[rows].astype(np.float32), y.astype(np.float32)))
    return out


def score_ours(config: NetworkConfig, state: StateDict, data: Prepared, task: str) -> float:
    mean, std = data.target_scale
    y = data.targets[data.holdout].astype(np.float64)
    if task == "regression":
        y = (y - mean) / std
    evaluation = evaluate(
        config,
        state,
        data.features[data.holdout].astype(np.float32),
        y.astype(np.float32),
        task,
        target_scale=data.target_scale,
    )
    assert evaluation is not None
    return evaluation.metrics["accuracy" if task == "classification" else "r2"]


def mean_sd(values: list[float]) -> str:
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"

"""The main tables: linear models (logistic and ridge regression) at 1, 4 and 8 shards
against scikit-learn's LogisticRegression and Ridge on the same training rows."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
from accuracy_harness import (
    ALPHA,
    FULL_BATCH,
    SHARD_COUNTS,
    C,
    Dataset,
    Prepared,
    Setting,
    bundled,
    logistic_l2,
    mean_sd,
    prepare,
    ridge_l2,
    score_ours,
    shards_of,
)
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_iris,
    load_wine,
    make_classification,
)
from sklearn.linear_model import LogisticRegression, Ridge

from app.training.federated import fit_federated
from app.training.networks import NetworkConfig


def _generated() -> tuple[np.ndarray, np.ndarray]:
    x, y = make_classification(n_samples=200_000, n_features=50, n_informative=20, random_state=0)
    return x.astype(np.float64), y


# Small tables: one full-batch gradient step per shard per round. With plain SGD
# the example-weighted FedAvg of those steps is exactly one full-batch gradient
# step on the union, so the result does not depend on the shard count (up to
# float32 rounding) and converges to the same optimum as lbfgs.
SMALL = Setting("sgd", 1.0, FULL_BATCH, 1, 300)
SMALL_MINIBATCH = Setting("sgd", 0.1, 32, 1, 300)
DATASETS = [
    Dataset("iris", "classification", bundled(load_iris), SMALL, SMALL_MINIBATCH),
    Dataset("wine", "classification", bundled(load_wine), SMALL, SMALL_MINIBATCH),
    Dataset("breast_cancer", "classification", bundled(load_breast_cancer), SMALL, SMALL_MINIBATCH),
    Dataset("digits", "classification", bundled(load_digits), SMALL, SMALL_MINIBATCH),
    # A smaller step: the squared loss is more curved (its Hessian is 2 X'X / n).
    Dataset(
        "diabetes",
        "regression",
        bundled(load_diabetes),
        Setting("sgd", 0.2, FULL_BATCH, 1, 500),
        Setting("sgd", 0.02, 32, 1, 300),
    ),
    # Large table: minibatch local SGD, the regime FedAvg is for.
    Dataset(
        "make_classification_200k", "classification", _generated, Setting("sgd", 0.05, 256, 1, 5)
    ),
]


def fit_ours(
    dataset: Dataset,
    setting: Setting,
    data: Prepared,
    seed: int,
    n_shards: int,
    n_classes: int,
) -> tuple[float, float]:
    n_train = int(data.train.sum())
    if dataset.task == "classification":
        config = NetworkConfig("logistic_regression", data.features.shape[1], n_classes)
        l2 = logistic_l2(n_train, n_classes)
    else:
        config = NetworkConfig("linear_regression", data.features.shape[1], 1)
        l2 = ridge_l2(n_train)
    train = setting.train_config(dataset.task, l2)
    shards = shards_of(data, seed, n_shards, dataset.task)
    start = time.perf_counter()
    result = fit_federated(config, shards, train, rounds=setting.rounds, seed=seed)
    seconds = time.perf_counter() - start
    return score_ours(config, result.state, data, dataset.task), seconds


def fit_sklearn(dataset: Dataset, data: Prepared) -> tuple[float, float]:
    x_train, y_train = data.features[data.train], data.targets[data.train]
    x_hold, y_hold = data.features[data.holdout], data.targets[data.holdout]
    model: LogisticRegression | Ridge
    if dataset.task == "classification":
        model = LogisticRegression(C=C, solver="lbfgs", max_iter=10_000)
    else:
        model = Ridge(alpha=ALPHA)
    start = time.perf_counter()
    model.fit(x_train, y_train)
    seconds = time.perf_counter() - start
    return float(model.score(x_hold, y_hold)), seconds  # accuracy or R²


@dataclass
class Row:
    dataset: str
    task: str
    shards: int
    setting: str
    ours: list[float]
    theirs: list[float]
    our_seconds: list[float]
    their_seconds: list[float]

    @property
    def gap(self) -> float:
        # Positive: scikit-learn is better. Percentage points for accuracy.
        factor = 100.0 if self.task == "classification" else 1.0
        return factor * (float(np.mean(self.theirs)) - float(np.mean(self.ours)))


def run_table(datasets: list[Dataset], seeds: list[int], *, minibatch: bool = False) -> list[Row]:
    rows: list[Row] = []
    for dataset in datasets:
        setting = dataset.minibatch if minibatch else dataset.setting
        if setting is None:
            continue
        x, y = dataset.load()
        n_classes = int(y.max()) + 1 if dataset.task == "classification" else 1
        by_shards = {
            n: Row(dataset.name, dataset.task, n, setting.describe(), [], [], [], [])
            for n in SHARD_COUNTS
        }
        for seed in seeds:
            data = prepare(x, y, dataset.task, seed)
            theirs, their_seconds = fit_sklearn(dataset, data)
            for n_shards, row in by_shards.items():
                ours, our_seconds = fit_ours(dataset, setting, data, seed, n_shards, n_classes)
                row.ours.append(ours)
                row.our_seconds.append(our_seconds)
                row.theirs.append(theirs)
                row.their_seconds.append(their_seconds)
        for row in by_shards.values():
            print_row(row)
            rows.append(row)
    return rows


def print_header() -> None:
    print(
        f"| {'dataset':<24} | {'metric':<8} | {'shards':>6} | {'ours (settings)':<33} "
        f"| {'ours':>15} | {'scikit-learn':>15} | {'gap':>9} | {'ours s':>7} | {'sklearn s':>9} |"
    )
    print(
        f"|{'-' * 26}|{'-' * 10}|{'-' * 8}|{'-' * 35}|{'-' * 17}|{'-' * 17}|{'-' * 11}|"
        f"{'-' * 9}|{'-' * 11}|"
    )


def print_row(row: Row) -> None:
    metric = "accuracy" if row.task == "classification" else "R²"
    gap = f"{row.gap:+.3f} pp" if row.task == "classification" else f"{row.gap:+.4f}"
    print(
        f"| {row.dataset:<24} | {metric:<8} | {row.shards:>6} | {row.setting:<33} "
        f"| {mean_sd(row.ours):>15} | {mean_sd(row.theirs):>15} | {gap:>9} "
        f"| {np.mean(row.our_seconds):>7.2f} | {np.mean(row.their_seconds):>9.3f} |"
    )
    sys.stdout.flush()

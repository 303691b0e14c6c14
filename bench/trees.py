"""Boosted trees through the round protocol against LightGBM and scikit-learn's
histogram boosting, with the same trees, depth, bins and learning rate, one process
each, the same machine, the same run.

Run from the repository root:

    .venv/bin/python bench/trees.py            # scikit-learn datasets and a 200k x 20 set
    .venv/bin/python bench/trees.py --quick    # the small datasets only

This measures the learner in process (`run_rounds`, as `bench/accuracy.py` does for
networks): holdout accuracy or R² and fit time at 1 and 4 shards. The 1M x 50 set,
where the throughput target is set, and the per-level split of time into the shards'
histograms, their tasks (Redis, SQL), the merge and Celery's dispatch run through
the service: `bench/trees_service.py --rows 1000000 --features 50`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from dataclasses import dataclass

import lightgbm
import numpy as np
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
from sklearn.metrics import accuracy_score, r2_score

from app.training.federated import run_rounds
from app.training.trees.binning import bin_edges, bin_matrix, sample_rows
from app.training.trees.objectives import objective_for
from app.training.trees.policy import BoostedTreesPolicy, ensemble_of
from app.training.trees.splits import SplitRules

TARGET_ACCURACY_GAP_PP = 0.3
TARGET_R2_GAP = 0.01


@dataclass(frozen=True)
class Setting:
    n_trees: int = 100
    max_depth: int = 4
    learning_rate: float = 0.1
    max_bins: int = 255
    l2: float = 1.0
    min_child_weight: float = 1.0


@dataclass(frozen=True)
class Dataset:
    name: str
    x: np.ndarray
    y: np.ndarray
    task: str  # "classification" or "regression"


def nonlinear(rows: int = 200_000, features: int = 20, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    logit = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + (x[:, 3] > 0.5) * x[:, 4] - 0.5 * x[:, 5]
    y = (logit + rng.logistic(scale=0.5, size=rows) > 0).astype(np.float64)
    return Dataset(f"nonlinear {rows // 1000}k x {features}", x, y, "classification")


def datasets(quick: bool) -> list[Dataset]:
    found = [
        Dataset("breast_cancer", *load_breast_cancer(return_X_y=True), "classification"),
        Dataset("digits", *load_digits(return_X_y=True), "classification"),
        Dataset("diabetes", *load_diabetes(return_X_y=True), "regression"),
    ]
    if not quick:
        found.append(nonlinear())
    return [Dataset(d.name, d.x.astype(np.float64), d.y.astype(np.float64), d.task) for d in found]


def ours(data: Dataset, train: np.ndarray, setting: Setting, shards: int) -> np.ndarray:
    x, y = data.x[train], data.y[train]
    classes = len(np.unique(y)) if data.task == "classification" else 0
    objective = objective_for(data.task, classes)
    sample = sample_rows(len(y), 200_000, seed=0)
    policy = BoostedTreesPolicy(
        edges=tuple(bin_edges(x[sample, j], setting.max_bins) for j in range(x.shape[1])),
        objective=objective,
        base_score=tuple(objective.base_score(y).tolist()),
        n_trees=setting.n_trees,
        max_depth=setting.max_depth,
        learning_rate=setting.learning_rate,
        rules=SplitRules(l2=setting.l2, min_child_weight=setting.min_child_weight),
    )
    parts = np.array_split(np.arange(len(y)), shards)
    bins = bin_matrix(x, list(policy.edges or ()))
    state = run_rounds(policy, [(bins[p], y[p]) for p in parts]).state
    raw = ensemble_of(state).predict_raw(data.x[~train])
    predictions = objective.predict(raw)
    if data.task == "regression":
        return predictions[:, 0]
    if objective.name == "logistic":
        return (predictions[:, 0] > 0.5).astype(np.float64)
    return predictions.argmax(axis=1).astype(np.float64)


def lightgbm_fit(data: Dataset, train: np.ndarray, setting: Setting) -> np.ndarray:
    common = {
        "n_estimators": setting.n_trees,
        "max_depth": setting.max_depth,
        "num_leaves": 2**setting.max_depth,
        "learning_rate": setting.learning_rate,
        "max_bin": setting.max_bins,
        "reg_lambda": setting.l2,
        "min_child_weight": setting.min_child_weight,
        "min_child_samples": 1,
        "n_jobs": 1,
        "verbose": -1,
    }
    model = (
        lightgbm.LGBMRegressor(**common)
        if data.task == "regression"
        else lightgbm.LGBMClassifier(**common)
    )
    model.fit(data.x[train], data.y[train])
    return np.asarray(model.predict(data.x[~train]), dtype=np.float64)


def sklearn_fit(data: Dataset, train: np.ndarray, setting: Setting) -> np.ndarray:
    common = {
        "max_iter": setting.n_trees,
        "max_depth": setting.max_depth,
        "learning_rate": setting.learning_rate,
        "max_bins": setting.max_bins,
        "l2_regularization": setting.l2,
        "min_samples_leaf": 1,
        "early_stopping": False,
        "random_state": 0,
    }
    model = (
        HistGradientBoostingRegressor(**common)
        if data.task == "regression"
        else HistGradientBoostingClassifier(**common)
    )
    model.fit(data.x[train], data.y[train])
    return np.asarray(model.predict(data.x[~train]), dtype=np.float64)


def timed(fit: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    predictions = fit()
    return predictions, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small datasets only")
    quick = parser.parse_args().quick
    setting = Setting()
    print(
        f"{setting.n_trees} trees, depth {setting.max_depth}, learning rate "
        f"{setting.learning_rate}, {setting.max_bins} bins, l2 {setting.l2}; one process each"
    )
    print()
    print("| dataset | metric | fit | score | gap to LightGBM | seconds | time / LightGBM |")
    print("|---|---|---|---:|---:|---:|---:|")
    worst_accuracy_gap, worst_r2_gap = 0.0, 0.0
    for data in datasets(quick):
        # Every fourth row is the holdout, the same rows for every fit.
        train = np.arange(len(data.y)) % 4 != 0
        truth = data.y[~train]
        regression = data.task == "regression"

        def score(
            predictions: np.ndarray, truth: np.ndarray = truth, regression: bool = regression
        ) -> float:
            return float(
                r2_score(truth, predictions) if regression else accuracy_score(truth, predictions)
            )

        reference, reference_s = timed(lambda d=data, t=train: lightgbm_fit(d, t, setting))
        baseline = score(reference)
        rows = [("LightGBM", baseline, reference_s)]
        predictions, seconds = timed(lambda d=data, t=train: sklearn_fit(d, t, setting))
        rows.append(("scikit-learn HGB", score(predictions), seconds))
        for shards in (1, 4):
            predictions, seconds = timed(lambda d=data, t=train, s=shards: ours(d, t, setting, s))
            value = score(predictions)
            rows.append((f"shardtrain, {shards} shard{'s' * (shards > 1)}", value, seconds))
            if regression:
                worst_r2_gap = max(worst_r2_gap, baseline - value)
            else:
                worst_accuracy_gap = max(worst_accuracy_gap, 100 * (baseline - value))
        metric = "R²" if regression else "accuracy"
        for fit, value, seconds in rows:
            gap = value - baseline
            shown_gap = f"{gap:+.4f}" if regression else f"{100 * gap:+.2f} pp"
            print(
                f"| {data.name} | {metric} | {fit} | {value:.4f} | {shown_gap} | "
                f"{seconds:.2f} | {seconds / reference_s:.1f} |"
            )
    print()
    met = "met" if worst_accuracy_gap <= TARGET_ACCURACY_GAP_PP else "NOT met"
    print(
        f"target accuracy within {TARGET_ACCURACY_GAP_PP} pp of LightGBM: {met} "
        f"(worst {worst_accuracy_gap:+.2f} pp below)"
    )
    met = "met" if worst_r2_gap <= TARGET_R2_GAP else "NOT met"
    print(f"target R² within {TARGET_R2_GAP} of LightGBM: {met} (worst {worst_r2_gap:+.4f} below)")


if __name__ == "__main__":
    main()

"""An MLP on digits at 1, 4 and 8 shards against scikit-learn's MLPClassifier."""

from __future__ import annotations

import time
import warnings

import numpy as np
from accuracy_harness import SHARD_COUNTS, Setting, bundled, mean_sd, prepare, score_ours, shards_of
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from app.training.federated import fit_federated
from app.training.networks import NetworkConfig

MLP_SETTING = Setting("adam", 0.001, 32, 2, 40)
MLP_HIDDEN = [256]


def run_mlp(seeds: list[int]) -> dict[int, list[float]]:
    x, y = bundled(load_digits)()
    results: dict[int, list[float]] = {n: [] for n in SHARD_COUNTS}
    times: dict[int, list[float]] = {n: [] for n in SHARD_COUNTS}
    sklearn_scores: list[float] = []
    sklearn_times: list[float] = []
    config = NetworkConfig("mlp", x.shape[1], 10, hidden_layers=MLP_HIDDEN)
    s = MLP_SETTING
    train = s.train_config("classification")
    for seed in seeds:
        data = prepare(x, y, "classification", seed)
        for n_shards in SHARD_COUNTS:
            shards = shards_of(data, seed, n_shards, "classification")
            start = time.perf_counter()
            result = fit_federated(config, shards, train, rounds=s.rounds, seed=seed)
            times[n_shards].append(time.perf_counter() - start)
            results[n_shards].append(score_ours(config, result.state, data, "classification"))
        reference = MLPClassifier(
            hidden_layer_sizes=tuple(MLP_HIDDEN), max_iter=300, random_state=seed
        )
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            reference.fit(data.features[data.train], data.targets[data.train])
        sklearn_times.append(time.perf_counter() - start)
        sklearn_scores.append(
            float(reference.score(data.features[data.holdout], data.targets[data.holdout]))
        )
    print(
        f"\nMLP on digits: hidden {MLP_HIDDEN}, relu, {s.describe()}, no L2; "
        f"reference: scikit-learn MLPClassifier({tuple(MLP_HIDDEN)}, adam, max_iter=300) "
        "on all training rows"
    )
    print(f"| {'shards':>12} | {'accuracy':>15} | {'seconds':>7} |")
    print(f"|{'-' * 14}|{'-' * 17}|{'-' * 9}|")
    for n_shards in SHARD_COUNTS:
        print(
            f"| {n_shards:>12} | {mean_sd(results[n_shards]):>15} | "
            f"{np.mean(times[n_shards]):>7.2f} |"
        )
    print(
        f"| {'scikit-learn':>12} | {mean_sd(sklearn_scores):>15} | {np.mean(sklearn_times):>7.2f} |"
    )
    return results

"""Label-skewed shards: how many more rounds logistic regression on digits needs to reach
its IID accuracy when each shard holds only one or two classes."""

from __future__ import annotations

import sys

import numpy as np
from accuracy_harness import Prepared, Setting, bundled, logistic_l2, prepare, score_ours, shards_of
from sklearn.datasets import load_digits

from app.training.federated import fit_federated
from app.training.loop import TrainConfig
from app.training.networks import NetworkConfig
from app.training.protocol import StateDict

NON_IID_SETTINGS = [
    Setting("sgd", 0.1, 32, 1, 0),
    Setting("sgd", 0.1, 32, 5, 0),
    Setting("adam", 0.01, 32, 1, 0),
]
NON_IID_SHARDS = 8
NON_IID_TOLERANCE = 0.005


def label_sorted_shards(data: Prepared, n_shards: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Training rows sorted by label and cut into equal runs: 1-2 classes per shard."""
    rows = np.flatnonzero(data.train)
    rows = rows[np.argsort(data.targets[rows], kind="stable")]
    return [
        (data.features[part].astype(np.float32), data.targets[part].astype(np.float32))
        for part in np.array_split(rows, n_shards)
    ]


def _accuracy_per_round(
    config: NetworkConfig,
    shards: list[tuple[np.ndarray, np.ndarray]],
    train: TrainConfig,
    rounds: int,
    seed: int,
    data: Prepared,
) -> list[float]:
    scores: list[float] = []

    def record(_round: int, state: StateDict) -> None:
        scores.append(score_ours(config, state, data, "classification"))

    fit_federated(config, shards, train, rounds=rounds, seed=seed, on_round=record)
    return scores


def _first_reaching(scores: list[float], target: float) -> int | None:
    for index, score in enumerate(scores):
        if score >= target:
            return index + 1
    return None


def run_non_iid(
    seeds: list[int], settings: list[Setting], iid_rounds: int, max_rounds: int
) -> None:
    x, y = bundled(load_digits)()
    config = NetworkConfig("logistic_regression", x.shape[1], 10)
    print(
        f"\nLabel-skewed shards: digits, logistic regression (l2 = 1/(C n)), "
        f"{NON_IID_SHARDS} shards.\n"
        f"IID = assign_rows shards; skewed = training rows sorted by label and cut into "
        f"{NON_IID_SHARDS} runs (1-2 classes each).\n"
        f"Target = IID holdout accuracy after {iid_rounds} rounds minus "
        f"{100 * NON_IID_TOLERANCE:.1f} pp; 'rounds' = first round at or above it; "
        f"the skewed run stops at {max_rounds}."
    )
    print(
        f"| {'local training':<22} | {'seed':>4} | {'IID acc':>8} | {'target':>8} "
        f"| {'IID rounds':>10} | {'skewed rounds':>13} | {'skewed acc at end':>17} "
        f"| {'extra rounds':>12} |"
    )
    print(
        f"|{'-' * 24}|{'-' * 6}|{'-' * 10}|{'-' * 10}|{'-' * 12}|{'-' * 15}|{'-' * 19}|{'-' * 14}|"
    )
    for s in settings:
        label = f"{s.optimizer} lr={s.learning_rate:g} B={s.batch_size} E={s.local_epochs}"
        for seed in seeds:
            data = prepare(x, y, "classification", seed)
            train = s.train_config("classification", logistic_l2(int(data.train.sum()), 10))
            iid_shards = shards_of(data, seed, NON_IID_SHARDS, "classification")
            iid = _accuracy_per_round(config, iid_shards, train, iid_rounds, seed, data)
            target = iid[-1] - NON_IID_TOLERANCE
            skewed_shards = label_sorted_shards(data, NON_IID_SHARDS)
            skewed = _accuracy_per_round(config, skewed_shards, train, max_rounds, seed, data)
            iid_first = _first_reaching(iid, target) or iid_rounds
            skewed_first = _first_reaching(skewed, target)
            if skewed_first is None:
                shown, extra = f">{max_rounds}", f">{max_rounds - iid_first}"
            else:
                shown, extra = str(skewed_first), f"{skewed_first - iid_first:+d}"
            print(
                f"| {label:<22} | {seed:>4} | {iid[-1]:>8.4f} | {target:>8.4f} "
                f"| {iid_first:>10} | {shown:>13} | {skewed[-1]:>17.4f} | {extra:>12} |"
            )
            sys.stdout.flush()

"""The seeded split of row indices into holdout, validation and training shards."""

import numpy as np

HOLDOUT = -2
VALIDATION = -1


def assign_rows(
    n_rows: int,
    *,
    seed: int,
    holdout_fraction: float,
    validation_fraction: float,
    shards: int,
) -> np.ndarray:
    """Return, per row, HOLDOUT, VALIDATION or the shard index it trains in.

    The shards are disjoint and together cover every training row exactly once.
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    n_holdout = round(n_rows * holdout_fraction)
    n_validation = round(n_rows * validation_fraction)
    n_train = n_rows - n_holdout - n_validation
    if n_train < shards:
        raise ValueError(
            f"{n_rows} rows leave {n_train} training rows, fewer than the {shards} shards asked for"
        )
    order = np.random.default_rng(seed).permutation(n_rows)
    assignment = np.empty(n_rows, dtype=np.int16)
    assignment[order[:n_holdout]] = HOLDOUT
    assignment[order[n_holdout : n_holdout + n_validation]] = VALIDATION
    for shard, rows in enumerate(np.array_split(order[n_holdout + n_validation :], shards)):
        assignment[rows] = shard
    return assignment

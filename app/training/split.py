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
    # Lay the groups out in order, then shuffle them in place: two bytes per row, where
    # a permutation of row indices would cost eight.
    sizes = [n_holdout, n_validation, *_split_evenly(n_train, shards)]
    groups = np.array([HOLDOUT, VALIDATION, *range(shards)], dtype=np.int16)
    assignment = np.repeat(groups, sizes)
    np.random.default_rng(seed).shuffle(assignment)
    return assignment


def _split_evenly(total: int, parts: int) -> list[int]:
    """Sizes that differ by at most one, the larger ones first (as np.array_split)."""
    base, extra = divmod(total, parts)
    return [base + 1 if i < extra else base for i in range(parts)]

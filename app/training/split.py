"""The seeded split of row indices into holdout, validation and training shards, and
the cross-validation folds cut from it."""

import numpy as np

HOLDOUT = -2
VALIDATION = -1


def training_rows(
    n_rows: int,
    *,
    holdout_fraction: float,
    validation_fraction: float,
    cv: tuple[int, int] | None = None,
) -> int:
    """How many rows the shards share: the arithmetic of `assign_rows`, for the API to
    refuse a spec that would leave fewer than its shards."""
    n_holdout = round(n_rows * holdout_fraction)
    if cv is not None:
        folds, fold = cv
        return n_rows - n_holdout - _split_evenly(n_rows - n_holdout, folds)[fold]
    return n_rows - n_holdout - round(n_rows * validation_fraction)


def assign_rows(
    n_rows: int,
    *,
    seed: int,
    holdout_fraction: float,
    validation_fraction: float,
    shards: int,
    cv: tuple[int, int] | None = None,
) -> np.ndarray:
    """Return, per row, HOLDOUT, VALIDATION or the shard index it trains in.

    The shards are disjoint and together cover every training row exactly once. With
    `cv = (folds, fold)` the holdout is the same rows as without; the other rows are
    dealt into `folds` seeded, disjoint folds, fold `fold` validates and the rest train.
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
    if cv is not None:
        _deal_folds(assignment, seed=seed, shards=shards, cv=cv)
    return assignment


def _deal_folds(assignment: np.ndarray, *, seed: int, shards: int, cv: tuple[int, int]) -> None:
    """Re-assign, in place, every row outside the holdout: VALIDATION in fold `fold`,
    a shard otherwise. The folds depend on the seed and the fold count only, so the
    jobs of one cross-validation see disjoint validation rows that cover them all."""
    folds, fold = cv
    inside = np.nonzero(assignment != HOLDOUT)[0]
    fold_of = np.repeat(np.arange(folds, dtype=np.int16), _split_evenly(len(inside), folds))
    np.random.default_rng([seed, folds]).shuffle(fold_of)
    trains = fold_of != fold
    n_train = int(trains.sum())
    if n_train < shards:
        raise ValueError(
            f"fold {fold} of {folds} leaves {n_train} training rows, fewer than the "
            f"{shards} shards asked for"
        )
    shard_of = np.repeat(np.arange(shards, dtype=np.int16), _split_evenly(n_train, shards))
    np.random.default_rng([seed, folds, fold]).shuffle(shard_of)
    dealt = np.full(len(inside), VALIDATION, dtype=np.int16)
    dealt[trains] = shard_of
    assignment[inside] = dealt


def _split_evenly(total: int, parts: int) -> list[int]:
    """Sizes that differ by at most one, the larger ones first (as np.array_split)."""
    base, extra = divmod(total, parts)
    return [base + 1 if i < extra else base for i in range(parts)]

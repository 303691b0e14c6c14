import numpy as np
import pytest

from app.training.split import HOLDOUT, VALIDATION, assign_rows


def split(n_rows: int = 1000, seed: int = 7, shards: int = 4, **fractions: float) -> np.ndarray:
    return assign_rows(
        n_rows,
        seed=seed,
        holdout_fraction=fractions.get("holdout", 0.2),
        validation_fraction=fractions.get("validation", 0.1),
        shards=shards,
    )


def test_every_row_gets_exactly_one_assignment() -> None:
    assignment = split(1000, shards=4)
    assert assignment.shape == (1000,)
    allowed = {HOLDOUT, VALIDATION, 0, 1, 2, 3}
    assert set(np.unique(assignment).tolist()) == allowed


def test_shards_are_disjoint_and_cover_the_training_rows_once() -> None:
    assignment = split(1003, shards=5)
    training_rows = np.flatnonzero(assignment >= 0)
    shard_rows = [np.flatnonzero(assignment == shard) for shard in range(5)]
    for i in range(5):
        for j in range(i + 1, 5):
            assert np.intersect1d(shard_rows[i], shard_rows[j]).size == 0
    together = np.concatenate(shard_rows)
    assert together.size == training_rows.size
    assert np.array_equal(np.sort(together), training_rows)
    # Nothing lands in a shard that was not asked for.
    assert assignment.max() == 4


def test_holdout_and_validation_sizes() -> None:
    assignment = split(1000, holdout=0.2, validation=0.1, shards=3)
    assert np.count_nonzero(assignment == HOLDOUT) == 200
    assert np.count_nonzero(assignment == VALIDATION) == 100
    assert np.count_nonzero(assignment >= 0) == 700


def test_zero_validation_fraction_gives_no_validation_rows() -> None:
    assignment = split(500, holdout=0.3, validation=0.0, shards=2)
    assert np.count_nonzero(assignment == VALIDATION) == 0
    assert np.count_nonzero(assignment == HOLDOUT) == 150
    assert np.count_nonzero(assignment >= 0) == 350


def test_holdout_rows_are_spread_over_the_file_not_a_block() -> None:
    assignment = split(1000, holdout=0.2, validation=0.0, shards=2)
    holdout = np.flatnonzero(assignment == HOLDOUT)
    # A seeded permutation, not the first or last 200 rows.
    assert holdout.min() < 100
    assert holdout.max() > 900


@pytest.mark.parametrize(("n_rows", "shards"), [(1000, 4), (1003, 5), (997, 7), (10, 7)])
def test_shard_sizes_differ_by_at_most_one(n_rows: int, shards: int) -> None:
    assignment = split(n_rows, shards=shards, holdout=0.0, validation=0.0)
    sizes = np.bincount(assignment, minlength=shards)
    assert sizes.size == shards
    assert sizes.sum() == n_rows
    assert sizes.max() - sizes.min() <= 1
    assert sizes.min() >= 1


def test_same_seed_gives_identical_assignment() -> None:
    assert np.array_equal(split(seed=123), split(seed=123))


def test_different_seed_gives_different_assignment() -> None:
    first, second = split(seed=1), split(seed=2)
    assert not np.array_equal(first, second)
    # Same sizes all the same: only which rows go where changes.
    assert np.array_equal(np.bincount(first + 2), np.bincount(second + 2))


def test_too_few_training_rows_for_the_shards_raises() -> None:
    # 10 rows, 2 holdout, 1 validation: 7 training rows for 8 shards.
    with pytest.raises(ValueError, match="shards"):
        split(10, shards=8, holdout=0.2, validation=0.1)


def test_exactly_one_training_row_per_shard_is_enough() -> None:
    assignment = split(10, shards=7, holdout=0.2, validation=0.1)
    assert sorted(assignment[assignment >= 0].tolist()) == list(range(7))


def test_fractions_leaving_no_training_rows_raise() -> None:
    with pytest.raises(ValueError):
        split(100, shards=1, holdout=0.6, validation=0.5)


def test_zero_shards_raises() -> None:
    with pytest.raises(ValueError, match="shards"):
        split(100, shards=0)

"""Trees grown level by level over shards: the same trees at 1, 4 and 8 shards, raw
and binned prediction in agreement, a lossless round trip through safetensors, and a
boosted model that learns what scikit-learn's histogram boosting learns."""

import numpy as np
import pytest
from safetensors.torch import load, save
from sklearn.datasets import load_diabetes
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import r2_score

from app.training.trees.binning import bin_edges, bin_matrix, bins_per_feature
from app.training.trees.ensemble import TreeEnsemble
from app.training.trees.grow import GrownTree, ShardRows, grow_tree, to_ensemble
from app.training.trees.splits import SplitRules

RULES = SplitRules(l2=1.0, min_child_weight=1.0)


def boost(
    x: np.ndarray,
    y: np.ndarray,
    *,
    shards: int,
    n_trees: int = 20,
    max_depth: int = 3,
    learning_rate: float = 0.3,
    max_bins: int = 32,
) -> tuple[TreeEnsemble, list[np.ndarray]]:
    """Squared-error boosting, the rows dealt into `shards` parts."""
    edges = [bin_edges(x[:, j], max_bins) for j in range(x.shape[1])]
    binned, n_bins = bin_matrix(x, edges), bins_per_feature(edges)
    parts = np.array_split(np.arange(len(y)), shards)
    base = np.array([y.mean()])
    trees: list[tuple[GrownTree, int]] = []
    for _ in range(n_trees):
        ensemble = to_ensemble(trees, edges=edges, base_score=base, max_depth=max_depth)
        rows = [
            ShardRows(
                binned=binned[p],
                gradients=ensemble.predict_binned(binned[p])[:, 0] - y[p],
                hessians=np.ones(len(p)),
            )
            for p in parts
        ]
        tree = grow_tree(
            rows, rules=RULES, max_depth=max_depth, n_bins=n_bins, learning_rate=learning_rate
        )
        trees.append((tree, 0))
    return to_ensemble(trees, edges=edges, base_score=base, max_depth=max_depth), edges


def problem(rows: int = 800, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 5))
    x[rng.random(rows) < 0.15, 1] = np.nan
    signal = np.where(np.isnan(x[:, 1]), 1.0, x[:, 1])
    y = 2 * (x[:, 0] > 0) + signal * x[:, 2] + 0.1 * rng.normal(size=rows)
    return x, y


def test_the_same_trees_at_any_shard_count() -> None:
    x, y = problem()
    one, _ = boost(x, y, shards=1)
    for shards in (4, 8):
        other, _ = boost(x, y, shards=shards)
        for name in ("feature", "threshold_bin", "default_left", "left", "right"):
            np.testing.assert_array_equal(getattr(other, name), getattr(one, name))
        np.testing.assert_allclose(other.value, one.value, rtol=0, atol=1e-6)
        np.testing.assert_array_equal(other.threshold, one.threshold)


def test_raw_and_binned_prediction_agree() -> None:
    x, y = problem()
    ensemble, edges = boost(x, y, shards=3)
    binned = bin_matrix(x, edges)
    np.testing.assert_array_equal(ensemble.predict_raw(x), ensemble.predict_binned(binned))
    # Values never seen in training land in the same bins as their neighbours.
    fresh, _ = problem(rows=300, seed=9)
    np.testing.assert_array_equal(
        ensemble.predict_raw(fresh), ensemble.predict_binned(bin_matrix(fresh, edges))
    )


def test_an_ensemble_survives_safetensors_bytes() -> None:
    x, y = problem()
    ensemble, _ = boost(x, y, shards=2, n_trees=5)
    restored = TreeEnsemble.from_state(load(save(ensemble.to_state())))
    np.testing.assert_array_equal(restored.predict_raw(x), ensemble.predict_raw(x))
    assert save(restored.to_state()) == save(ensemble.to_state())


def test_the_signal_features_carry_the_gain() -> None:
    x, y = problem()
    ensemble, _ = boost(x, y, shards=2)
    importance = ensemble.importance(x.shape[1])
    assert set(np.argsort(importance["gain"])[-3:]) == {0, 1, 2}
    assert importance["split"].sum() == (ensemble.feature >= 0).sum()


def test_boosting_learns_what_histogram_boosting_learns() -> None:
    x, y = load_diabetes(return_X_y=True)
    train, test = np.arange(len(y)) % 4 != 0, np.arange(len(y)) % 4 == 0
    ensemble, _ = boost(
        x[train], y[train], shards=4, n_trees=60, max_depth=3, learning_rate=0.1, max_bins=64
    )
    ours = r2_score(y[test], ensemble.predict_raw(x[test])[:, 0])
    reference = HistGradientBoostingRegressor(
        max_iter=60,
        max_depth=3,
        learning_rate=0.1,
        max_bins=64,
        l2_regularization=1.0,
        min_samples_leaf=1,
        early_stopping=False,
        random_state=0,
    ).fit(x[train], y[train])
    theirs = r2_score(y[test], reference.predict(x[test]))
    assert ours > 0.3
    assert ours == pytest.approx(theirs, abs=0.05)

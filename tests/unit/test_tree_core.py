"""The pure parts of the histogram trees against brute force: binning, histograms
(built, subtracted and summed over shards) and split finding."""

import numpy as np
import pytest

from app.training.split import assign_rows
from app.training.trees.binning import (
    MISSING_BIN,
    bin_edges,
    bin_matrix,
    bins_per_feature,
    sample_rows,
)
from app.training.trees.histograms import build_histograms, sibling_histogram, sum_histograms
from app.training.trees.splits import SplitRules, best_split, goes_left, leaf_weight


def data(rows: int = 600, features: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    x[:, 1] = rng.integers(0, 5, size=rows)  # few distinct values
    x[rng.random(rows) < 0.1, 2] = np.nan  # missing values
    y = (x[:, 0] > 0.3).astype(float) + 0.1 * rng.normal(size=rows)
    return x, y


def test_bins_are_ordered_and_missing_has_its_own() -> None:
    x, _ = data()
    edges = [bin_edges(x[:, j], 16) for j in range(x.shape[1])]
    binned = bin_matrix(x, edges)
    assert binned.dtype == np.uint8
    assert (binned[np.isnan(x[:, 2]), 2] == MISSING_BIN).all()
    assert (binned[~np.isnan(x)] >= 1).all()
    for j in range(x.shape[1]):
        present = ~np.isnan(x[:, j])
        order = np.argsort(x[present, j], kind="stable")
        assert (np.diff(binned[present, j][order].astype(int)) >= 0).all()
        assert binned[present, j].max() <= 16
    # Few distinct values: one bin per value.
    assert len(np.unique(binned[:, 1])) == 5 and edges[1].size == 4
    assert bins_per_feature(edges) == 1 + 16


def test_equal_values_never_straddle_a_bin_edge() -> None:
    values = np.repeat(np.arange(40, dtype=float), np.arange(1, 41))
    edges = bin_edges(values, 8)
    binned = bin_matrix(values[:, None], [edges])[:, 0]
    for value in np.unique(values):
        assert len(np.unique(binned[values == value])) == 1
    with pytest.raises(ValueError):
        bin_edges(values, 256)


def test_the_sample_for_edges_is_the_same_at_any_shard_count() -> None:
    # The training rows are the same set however many shards they are dealt into, so
    # a sample drawn by global row index gives the same edges at 1, 4 and 8 shards.
    x, _ = data(rows=5000)
    edges_by_shards = []
    for shards in (1, 4, 8):
        assignment = assign_rows(
            5000, seed=3, holdout_fraction=0.2, validation_fraction=0.1, shards=shards
        )
        training = np.flatnonzero(assignment >= 0)
        chosen = training[sample_rows(training.size, 1000, seed=3)]
        edges_by_shards.append([bin_edges(x[chosen, j], 32) for j in range(x.shape[1])])
    for other in edges_by_shards[1:]:
        for a, b in zip(edges_by_shards[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def naive_histograms(
    binned: np.ndarray,
    g: np.ndarray,
    h: np.ndarray,
    row_nodes: np.ndarray,
    nodes: np.ndarray,
    n_bins: int,
) -> np.ndarray:
    out = np.zeros((len(nodes), binned.shape[1], n_bins, 2))
    for slot, node in enumerate(nodes):
        for row in np.flatnonzero(row_nodes == node):
            for feature in range(binned.shape[1]):
                out[slot, feature, binned[row, feature]] += (g[row], h[row])
    return out


def binned_problem(seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    x, y = data(rows=300, seed=seed)
    edges = [bin_edges(x[:, j], 12) for j in range(x.shape[1])]
    binned = bin_matrix(x, edges)
    gradients = -y  # squared error at prediction 0
    hessians = np.ones_like(y)
    return binned, gradients, hessians, bins_per_feature(edges)


def test_histograms_equal_a_loop_over_rows() -> None:
    binned, g, h, n_bins = binned_problem()
    row_nodes = np.asarray(np.random.default_rng(2).integers(-1, 3, size=binned.shape[0]))
    nodes = np.array([2, 0])
    built = build_histograms(binned, g, h, row_nodes, nodes, n_bins)
    np.testing.assert_allclose(built, naive_histograms(binned, g, h, row_nodes, nodes, n_bins))


def test_the_sibling_is_the_parent_minus_the_built_child() -> None:
    binned, g, h, n_bins = binned_problem()
    parent = build_histograms(binned, g, h, np.zeros(binned.shape[0], int), np.array([0]), n_bins)
    sides = (binned[:, 0] <= 4).astype(int) + 1  # nodes 1 and 2
    children = build_histograms(binned, g, h, sides, np.array([1, 2]), n_bins)
    np.testing.assert_allclose(sibling_histogram(parent[0], children[0]), children[1], atol=1e-12)


def test_shard_histograms_sum_to_the_whole_and_pick_the_same_split() -> None:
    binned, g, h, n_bins = binned_problem()
    nodes, everywhere = np.array([0]), np.zeros(binned.shape[0], int)
    whole = build_histograms(binned, g, h, everywhere, nodes, n_bins)
    rules = SplitRules(l2=1.0, min_child_weight=1.0)
    for shards in (4, 8):
        parts = np.array_split(np.arange(binned.shape[0]), shards)
        merged = sum_histograms(
            [build_histograms(binned[p], g[p], h[p], everywhere[p], nodes, n_bins) for p in parts]
        )
        np.testing.assert_allclose(merged, whole, rtol=0, atol=1e-9)
        split, expected = best_split(merged[0], rules), best_split(whole[0], rules)
        assert split is not None and expected is not None
        # The same split; its values differ only by the order the floats were added in.
        picked = (split.feature, split.threshold_bin, split.default_left)
        assert picked == (expected.feature, expected.threshold_bin, expected.default_left)
        assert split.left_weight == pytest.approx(expected.left_weight, abs=1e-9)
        assert split.right_weight == pytest.approx(expected.right_weight, abs=1e-9)


def brute_force_split(
    binned: np.ndarray, g: np.ndarray, h: np.ndarray, rules: SplitRules
) -> tuple[float, int, int, bool] | None:
    def score(mask: np.ndarray) -> float:
        return float(g[mask].sum() ** 2 / (h[mask].sum() + rules.l2))

    everything = np.ones(len(g), bool)
    best: tuple[float, int, int, bool] | None = None
    for default_left in (False, True):
        for feature in range(binned.shape[1]):
            for threshold in range(1, int(binned[:, feature].max())):
                column = binned[:, feature]
                left = np.where(column == 0, default_left, column <= threshold)
                if (
                    h[left].sum() < rules.min_child_weight
                    or h[~left].sum() < rules.min_child_weight
                ):
                    continue
                gain = 0.5 * (score(left) + score(~left) - score(everything))
                if gain > rules.min_split_gain and (best is None or gain > best[0] + 1e-12):
                    best = (gain, feature, threshold, default_left)
    return best


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_best_split_is_the_brute_force_best(seed: int) -> None:
    binned, g, h, n_bins = binned_problem(seed)
    rules = SplitRules(l2=0.5, min_child_weight=5.0)
    histogram = build_histograms(binned, g, h, np.zeros(len(g), int), np.array([0]), n_bins)[0]
    split = best_split(histogram, rules)
    expected = brute_force_split(binned, g, h, rules)
    assert split is not None and expected is not None
    assert split.gain == pytest.approx(expected[0], rel=1e-9)
    left = goes_left(binned[:, split.feature], split)
    assert split.left_weight == pytest.approx(leaf_weight(g[left].sum(), h[left].sum(), 0.5))
    assert split.right_weight == pytest.approx(leaf_weight(g[~left].sum(), h[~left].sum(), 0.5))


def test_no_split_when_the_rules_forbid_every_one() -> None:
    binned, g, h, n_bins = binned_problem()
    histogram = build_histograms(binned, g, h, np.zeros(len(g), int), np.array([0]), n_bins)[0]
    assert best_split(histogram, SplitRules(min_child_weight=len(g))) is None
    assert best_split(histogram, SplitRules(min_split_gain=1e9)) is None
    only = best_split(histogram, SplitRules(), features=np.array([3]))
    assert only is not None and only.feature == 3


def test_missing_values_learn_their_direction() -> None:
    # Rows with the feature missing behave like its high values: they must go right.
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(400, 1))
    y = (x[:, 0] > 0.5).astype(float)
    x[rng.random(400) < 0.3, 0] = np.nan
    y[np.isnan(x[:, 0])] = 1.0
    edges = [bin_edges(x[:, 0], 32)]
    binned = bin_matrix(x, edges)
    histogram = build_histograms(
        binned, -y, np.ones(400), np.zeros(400, int), np.array([0]), bins_per_feature(edges)
    )[0]
    split = best_split(histogram, SplitRules(l2=0.0))
    assert split is not None and split.default_left is False
    # When the missing rows look like the low values instead, they go left.
    y[np.isnan(x[:, 0])] = 0.0
    histogram = build_histograms(
        binned, -y, np.ones(400), np.zeros(400, int), np.array([0]), bins_per_feature(edges)
    )[0]
    mirrored = best_split(histogram, SplitRules(l2=0.0))
    assert mirrored is not None and mirrored.default_left is True
    assert mirrored.feature == split.feature

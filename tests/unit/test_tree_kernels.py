"""The compiled loops against the numpy they replaced: the same floats, bit for bit,
since exactness across shard counts rests on summing in the same order."""

from pathlib import Path

import numpy as np

from app.training.trees import scores
from app.training.trees.binning import MISSING_BIN, bin_edges, bin_matrix
from app.training.trees.ensemble import LEAF, TreeEnsemble
from app.training.trees.grow import GrownTree, route_rows
from app.training.trees.histograms import build_histograms
from app.training.trees.scores import evaluated, scores_of


def bincount_histograms(binned, gradients, hessians, row_nodes, nodes, n_bins):  # type: ignore[no-untyped-def]
    """The numpy version: one weighted bincount per statistic over (node, feature, bin)."""
    n_features = binned.shape[1]
    out = np.zeros((nodes.size, n_features, n_bins, 2))
    for slot, node in enumerate(nodes.tolist()):
        rows = np.flatnonzero(row_nodes == node)
        flat = (np.arange(n_features)[None, :] * n_bins + binned[rows]).ravel()
        for stat, values in enumerate((gradients, hessians)):
            weights = np.repeat(values[rows], n_features)
            out[slot, ..., stat] = np.bincount(
                flat, weights=weights, minlength=n_features * n_bins
            ).reshape(n_features, n_bins)
    return out


def test_histograms_are_the_bincount_sums_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    binned = rng.integers(0, 40, size=(5000, 7)).astype(np.uint8)
    g, h = rng.normal(size=5000) * 1e3, rng.uniform(1e-6, 1, size=5000)
    # Rows in nodes that are not built (2, 4) and rows out of every node (-1).
    row_nodes = rng.choice([-1, 1, 2, 3, 4, 6], size=5000)
    nodes = np.array([6, 1, 3])
    ours = build_histograms(binned, g, h, row_nodes, nodes, 40)
    assert ours.tobytes() == bincount_histograms(binned, g, h, row_nodes, nodes, 40).tobytes()
    # A node no row reached is all zeros, not garbage.
    assert not build_histograms(binned, g, h, row_nodes, np.array([5]), 40).any()


def test_histograms_of_a_memory_mapped_part(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    np.save(tmp_path / "bins.npy", rng.integers(0, 9, size=(300, 4)).astype(np.uint8))
    mapped = np.load(tmp_path / "bins.npy", mmap_mode="r")
    g, h = rng.normal(size=300), np.ones(300)
    everywhere, root = np.zeros(300, np.int64), np.array([0])
    assert (
        build_histograms(mapped, g, h, everywhere, root, 9).tobytes()
        == build_histograms(np.array(mapped), g, h, everywhere, root, 9).tobytes()
    )


def searchsorted_bins(features: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    out = np.empty(features.shape, np.uint8)
    for column, column_edges in enumerate(edges):
        values = features[:, column]
        bins = 1 + np.searchsorted(column_edges, values, side="left")
        bins[np.isnan(values)] = MISSING_BIN
        out[:, column] = bins
    return out


def test_binning_is_searchsorted_with_nan_in_the_missing_bin() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(20_000, 6))
    x[rng.random(x.shape) < 0.05] = np.nan
    x[:, 1] = np.round(x[:, 1])  # few distinct values: values land on the edges' runs
    x[:4, 2] = [np.inf, -np.inf, -0.0, 0.0]
    edges = [bin_edges(x[:, c], 255) for c in range(6)]
    edges[3] = np.empty(0)  # a constant column: every present value in bin 1
    edges[4] = np.array([0.0])
    # Values exactly on an edge go to the bin below it (side="left").
    x[4:8, 0] = edges[0][:4]
    assert (bin_matrix(x, edges) == searchsorted_bins(x, edges)).all()
    as_float32 = x.astype(np.float32)
    assert (bin_matrix(as_float32, edges) == searchsorted_bins(as_float32, edges)).all()
    assert (bin_matrix(x, edges)[np.isnan(x)] == MISSING_BIN).all()


def random_ensemble(rng: np.random.Generator, trees: int, features: int, depth: int = 4):  # type: ignore[no-untyped-def]
    capacity = 2 ** (depth + 1) - 1
    inner = 2**depth - 1
    feature = rng.integers(0, features, size=(trees, capacity)).astype(np.int32)
    feature[:, inner:] = LEAF
    feature[rng.random(feature.shape) < 0.2] = LEAF  # trees that stop early
    nodes = np.arange(capacity)
    left = np.where(feature != LEAF, 2 * nodes + 1, LEAF).astype(np.int32)
    right = np.where(feature != LEAF, 2 * nodes + 2, LEAF).astype(np.int32)
    threshold_bin = rng.integers(1, 30, size=(trees, capacity)).astype(np.int32)
    return TreeEnsemble(
        feature=feature,
        threshold_bin=threshold_bin,
        threshold=threshold_bin / 30.0,
        default_left=rng.random((trees, capacity)) < 0.5,
        left=left,
        right=right,
        value=rng.normal(size=(trees, capacity)),
        gain=np.zeros((trees, capacity)),
        tree_output=(np.arange(trees) % 3).astype(np.int32),
        base_score=np.array([0.5, -0.25, 0.125]),
    )


def walked(ensemble: TreeEnsemble, goes_left, rows: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The numpy version: every row down every tree with fancy indexing, then the
    leaves added tree by tree."""
    trees = np.arange(ensemble.n_trees)[None, :]
    node = np.zeros((rows, ensemble.n_trees), np.int64)
    for _ in range(ensemble.max_depth):
        feature = ensemble.feature[trees, node]
        inner = feature != LEAF
        left = goes_left(trees, node, np.where(inner, feature, 0))
        child = np.where(left, ensemble.left[trees, node], ensemble.right[trees, node])
        node = np.where(inner, child, node)
    raw = np.tile(ensemble.base_score, (rows, 1))
    values = ensemble.value[trees, node]
    for tree, output in enumerate(ensemble.tree_output.tolist()):
        raw[:, output] += values[:, tree]
    return raw


def test_scoring_walks_every_tree_as_numpy_did() -> None:
    rng = np.random.default_rng(3)
    ensemble = random_ensemble(rng, trees=45, features=5)
    binned = rng.integers(0, 31, size=(3000, 5)).astype(np.uint8)
    raw = binned / 30.0 - 1e-9
    raw[binned == MISSING_BIN] = np.nan

    def bins_left(trees, node, feature, binned=binned):  # type: ignore[no-untyped-def]
        bins = binned[np.arange(binned.shape[0])[:, None], feature]
        return np.where(
            bins == MISSING_BIN,
            ensemble.default_left[trees, node],
            bins <= ensemble.threshold_bin[trees, node],
        )

    def values_left(trees, node, feature, raw=raw):  # type: ignore[no-untyped-def]
        values = raw[np.arange(raw.shape[0])[:, None], feature]
        return np.where(
            np.isnan(values),
            ensemble.default_left[trees, node],
            values <= ensemble.threshold[trees, node],
        )

    assert ensemble.predict_binned(binned).tobytes() == walked(ensemble, bins_left, 3000).tobytes()
    assert ensemble.predict_raw(raw).tobytes() == walked(ensemble, values_left, 3000).tobytes()
    # A row at a time, as a single-record predict asks.
    assert (
        ensemble.predict_raw(raw[:1]).tobytes() == walked(ensemble, values_left, 3000)[:1].tobytes()
    )


def test_routing_stops_at_leaves_and_after_the_levels_asked() -> None:
    rng = np.random.default_rng(4)
    ensemble = random_ensemble(rng, trees=1, features=3)
    tree = GrownTree(
        feature=ensemble.feature[0].copy(),
        threshold_bin=ensemble.threshold_bin[0].copy(),
        default_left=ensemble.default_left[0].copy(),
        left=ensemble.left[0].copy(),
        right=ensemble.right[0].copy(),
        value=ensemble.value[0].copy(),
        gain=ensemble.gain[0].copy(),
    )
    binned = rng.integers(0, 31, size=(500, 3)).astype(np.uint8)
    for levels in range(5):
        nodes = route_rows(binned, tree, levels)
        depth = np.floor(np.log2(nodes + 1))
        assert (depth <= levels).all()
        # A row short of `levels` stopped because its node is a leaf.
        assert (tree.feature[nodes[depth < levels]] == LEAF).all()


def test_a_mapped_part_is_known_by_its_file_and_a_slice_by_its_bytes(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    ensemble = random_ensemble(rng, trees=3, features=4)
    first, second = tmp_path / "a.npy", tmp_path / "b.npy"
    np.save(first, rng.integers(0, 31, size=(200, 4)).astype(np.uint8))
    np.save(second, rng.integers(0, 31, size=(200, 4)).astype(np.uint8))
    a, b = np.load(first, mmap_mode="r"), np.load(second, mmap_mode="r")
    # Same shape, other bytes: another key, so never the other file's scores.
    assert scores._rows_key(a) != scores._rows_key(b)
    assert scores_of(ensemble, a).tobytes() == ensemble.predict_binned(np.array(a)).tobytes()
    assert scores_of(ensemble, b).tobytes() == ensemble.predict_binned(np.array(b)).tobytes()
    # A slice shares its map's file and offset but not its rows.
    assert scores._mapped_file(a[10:]) is None
    assert scores_of(ensemble, a[10:]).tobytes() == ensemble.predict_binned(a[10:]).tobytes()


def test_an_evaluation_is_kept_for_the_same_trees_rows_and_targets() -> None:
    rng = np.random.default_rng(6)
    ensemble = random_ensemble(rng, trees=4, features=4)
    binned = rng.integers(0, 31, size=(100, 4)).astype(np.uint8)
    targets = rng.integers(0, 3, size=100).astype(np.float64)
    calls: list[int] = []

    def mean_score(raw: np.ndarray, y: np.ndarray) -> float:
        calls.append(1)
        return float((raw[:, 0] * y).mean())

    first = evaluated(ensemble, binned, targets, mean_score, context="test")
    assert evaluated(ensemble, binned, targets, mean_score, context="test") == first
    assert len(calls) == 1
    # Other targets, another context, or one more tree: evaluated again.
    evaluated(ensemble, binned, targets[::-1].copy(), mean_score, context="test")
    evaluated(ensemble, binned, targets, mean_score, context="other")
    grown = ensemble.extended(random_ensemble(rng, trees=1, features=4))
    assert evaluated(grown, binned, targets, mean_score, context="test") == mean_score(
        grown.predict_binned(binned), targets
    )
    assert len(calls) == 5

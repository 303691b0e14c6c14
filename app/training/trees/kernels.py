"""The loops of tree training and scoring, compiled by numba.

Vectorized numpy pays for every (row, feature) pair with temporary arrays: a
histogram through `bincount` first builds an int64 index and a repeated weight per
pair, and scoring walks a (rows, trees) node matrix with fancy indexing. These loops
touch each pair once, in row order, so they add the same floats in the same order as
the numpy versions did: a cell of a histogram sums its rows in row order, and a row's
score adds its trees in tree order. Exactness across shard counts rests on that
order, not on the speed.

Compiled on first use and cached beside this file (`cache=True`; numba falls back to
a per-user cache directory where this one is read-only).
"""

import numba
import numpy as np

LEAF = -1
MISSING_BIN = 0


@numba.njit(cache=True, nogil=True)
def accumulate_histograms(
    binned: np.ndarray,
    gradients: np.ndarray,
    hessians: np.ndarray,
    row_slot: np.ndarray,
    out: np.ndarray,
) -> None:
    """Add each row with `row_slot >= 0` to `out[row_slot, feature, bin]`: its
    gradient at [..., 0] and its hessian at [..., 1]."""
    n_rows, n_features = binned.shape
    for row in range(n_rows):
        slot = row_slot[row]
        if slot < 0:
            continue
        gradient, hessian = gradients[row], hessians[row]
        for feature in range(n_features):
            value_bin = binned[row, feature]
            out[slot, feature, value_bin, 0] += gradient
            out[slot, feature, value_bin, 1] += hessian


@numba.njit(cache=True, nogil=True)
def route_binned(
    feature: np.ndarray,
    threshold_bin: np.ndarray,
    default_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    binned: np.ndarray,
    levels: int,
) -> np.ndarray:
    """Each row's node in one tree, at most `levels` splits down from the root."""
    nodes = np.zeros(binned.shape[0], np.int64)
    for row in range(binned.shape[0]):
        node = 0
        for _ in range(levels):
            split_on = feature[node]
            if split_on == LEAF:
                break
            value_bin = binned[row, split_on]
            if value_bin == MISSING_BIN:
                goes_left = default_left[node]
            else:
                goes_left = value_bin <= threshold_bin[node]
            node = left[node] if goes_left else right[node]
        nodes[row] = node
    return nodes


@numba.njit(cache=True, nogil=True)
def add_trees_binned(
    feature: np.ndarray,
    threshold_bin: np.ndarray,
    default_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    value: np.ndarray,
    tree_output: np.ndarray,
    binned: np.ndarray,
    raw: np.ndarray,
) -> None:
    """`raw[row, tree_output[t]] += value[t, leaf]` for every tree in order, each row
    walked down by its bins."""
    # Tree by tree over all rows: one tree's nodes stay in cache, and each row still
    # adds its trees in tree order.
    for tree in range(feature.shape[0]):
        output = tree_output[tree]
        for row in range(binned.shape[0]):
            node = 0
            while feature[tree, node] != LEAF:
                value_bin = binned[row, feature[tree, node]]
                if value_bin == MISSING_BIN:
                    goes_left = default_left[tree, node]
                else:
                    goes_left = value_bin <= threshold_bin[tree, node]
                node = left[tree, node] if goes_left else right[tree, node]
            raw[row, output] += value[tree, node]


@numba.njit(cache=True, nogil=True)
def add_trees_raw(
    feature: np.ndarray,
    threshold: np.ndarray,
    default_left: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    value: np.ndarray,
    tree_output: np.ndarray,
    features: np.ndarray,
    raw: np.ndarray,
) -> None:
    """As `add_trees_binned`, on raw float values: NaN follows the default direction,
    a present value goes left when `value <= threshold`."""
    # Tree by tree over all rows: one tree's nodes stay in cache, and each row still
    # adds its trees in tree order.
    for tree in range(feature.shape[0]):
        output = tree_output[tree]
        for row in range(features.shape[0]):
            node = 0
            while feature[tree, node] != LEAF:
                x = features[row, feature[tree, node]]
                goes_left = default_left[tree, node] if np.isnan(x) else x <= threshold[tree, node]
                node = left[tree, node] if goes_left else right[tree, node]
            raw[row, output] += value[tree, node]


@numba.njit(cache=True, nogil=True)
def bin_columns(
    features: np.ndarray, edges: np.ndarray, counts: np.ndarray, out: np.ndarray
) -> None:
    """`out[row, column]`: MISSING_BIN for NaN, else 1 + the first of the column's
    `counts[column]` sorted `edges` that is >= the value (`searchsorted`, side left)."""
    for row in range(features.shape[0]):
        for column in range(features.shape[1]):
            x = features[row, column]
            if np.isnan(x):
                out[row, column] = MISSING_BIN
                continue
            low, high = 0, counts[column]
            while low < high:
                middle = (low + high) >> 1
                if edges[column, middle] < x:
                    low = middle + 1
                else:
                    high = middle
            out[row, column] = 1 + low

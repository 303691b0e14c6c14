"""Gradient and hessian histograms of the nodes being split, per feature and bin.

A histogram is float64 `(nodes, features, bins, 2)`: [..., 0] sums the gradients and
[..., 1] the hessians of the rows in that node with that bin. Sums are float64 so
that adding shards' histograms in shard order differs from one shard's only in the
last bits, far below any gain difference a split decision rests on.
"""

import numpy as np

from app.training.trees.kernels import accumulate_histograms

GRADIENT, HESSIAN = 0, 1


def build_histograms(
    binned: np.ndarray,
    gradients: np.ndarray,
    hessians: np.ndarray,
    row_nodes: np.ndarray,
    nodes: np.ndarray,
    n_bins: int,
) -> np.ndarray:
    """Histograms of `nodes` (node ids) from the rows whose `row_nodes` is one of them,
    each cell summed over its rows in row order."""
    slot = np.full(int(max(nodes.max(initial=-1), row_nodes.max(initial=-1))) + 1, -1)
    slot[nodes] = np.arange(nodes.size)
    row_slot = np.where(row_nodes >= 0, slot[np.maximum(row_nodes, 0)], -1)
    out = np.zeros((nodes.size, binned.shape[1], n_bins, 2), dtype=np.float64)
    accumulate_histograms(
        np.ascontiguousarray(binned),
        np.ascontiguousarray(gradients, dtype=np.float64),
        np.ascontiguousarray(hessians, dtype=np.float64),
        row_slot,
        out,
    )
    return out


def sibling_histogram(parent: np.ndarray, built_child: np.ndarray) -> np.ndarray:
    """The other child's histogram without reading its rows: parent minus the child
    that was built (the smaller one, so the rows read are the fewer)."""
    return parent - built_child


def sum_histograms(per_shard: list[np.ndarray]) -> np.ndarray:
    """The merged histogram: the shards' histograms added in the order given (callers
    give shard order, so a re-run merge adds the same numbers in the same order)."""
    if not per_shard:
        raise ValueError("no histograms to sum")
    total = per_shard[0].copy()
    for histogram in per_shard[1:]:
        total += histogram
    return total

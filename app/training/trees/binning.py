"""Per-feature bin edges and the binned (uint8) form of a feature matrix.

Bin 0 holds the missing values (NaN) of every feature; bins 1..n hold the values, in
order, so a split "bin <= t" is a threshold on the raw value. At most 255 value bins,
so a binned row fits in uint8.

Edges must be the same at any shard count, or the trees would differ with it. They are
computed where every training row is visible (prepare) from a sample drawn by each
row's global index, not by the shard that holds it: the same rows are sampled however
the rows are later dealt out.
"""

import numpy as np

from app.training.trees.kernels import MISSING_BIN as MISSING_BIN  # bins are defined here
from app.training.trees.kernels import bin_columns

MAX_VALUE_BINS = 255


def sample_rows(n_rows: int, cap: int, seed: int) -> np.ndarray:
    """Indices of at most `cap` rows out of `n_rows`, chosen by seed alone: every row
    when there are few enough, else a seeded choice over the global row indices."""
    if n_rows <= cap:
        return np.arange(n_rows)
    chosen = np.random.default_rng(seed).choice(n_rows, size=cap, replace=False)
    return np.sort(chosen)


def bin_edges(values: np.ndarray, max_bins: int) -> np.ndarray:
    """Upper edges of at most `max_bins` value bins of one feature (NaN ignored): a
    value `v` falls in bin `1 + searchsorted(edges, v, side="left")`. A feature with
    at most `max_bins` distinct values gets one bin per value; otherwise the edges
    are midpoints between quantiles, so no bin boundary lands inside a run of equal
    values."""
    if not 2 <= max_bins <= MAX_VALUE_BINS:
        raise ValueError(f"max_bins must be between 2 and {MAX_VALUE_BINS}, not {max_bins}")
    present = values[~np.isnan(values)].astype(np.float64)
    distinct = np.unique(present)
    if distinct.size <= 1:
        return np.empty(0, dtype=np.float64)
    if distinct.size <= max_bins:
        return (distinct[:-1] + distinct[1:]) / 2
    quantiles = np.quantile(present, np.linspace(0, 1, max_bins + 1)[1:-1], method="lower")
    # The edge between a quantile and the next distinct value above it.
    upper = distinct[
        np.minimum(np.searchsorted(distinct, quantiles, side="right"), distinct.size - 1)
    ]
    edges = np.unique((quantiles + upper) / 2)
    return edges[edges < distinct[-1]]


def bin_matrix(features: np.ndarray, edges: list[np.ndarray]) -> np.ndarray:
    """`features` (rows by columns, float) as bins (uint8)."""
    if features.shape[1] != len(edges):
        raise ValueError(f"{features.shape[1]} columns but {len(edges)} sets of edges")
    table, counts = edges_table(edges)
    binned = np.empty(features.shape, dtype=np.uint8)
    bin_columns(np.ascontiguousarray(features), table, counts, binned)
    return binned


def edges_table(edges: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Every column's edges in one (columns, most edges) table padded with +inf, and
    how many each column has."""
    counts = np.array([e.size for e in edges], np.int64)
    table = np.full((len(edges), int(counts.max(initial=0))), np.inf)
    for column, column_edges in enumerate(edges):
        table[column, : column_edges.size] = column_edges
    return table, counts


def bins_per_feature(edges: list[np.ndarray]) -> int:
    """The histogram width that holds every feature: the missing bin and the largest
    feature's value bins."""
    return 1 + max((e.size + 1 for e in edges), default=1)

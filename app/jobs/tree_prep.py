"""What preparing a tree job adds to the common pass over the data: a sample of the
training rows to place the bin edges on, the bin edges, and the bound on a round's
histograms.

The sample is drawn by each row's index in the dataset, never by shard, and the
training rows are the same at every shard count (`split.assign_rows`), so the edges
and so the trees do not depend on how the rows are dealt out.
"""

from collections.abc import Mapping

import numpy as np

from app.jobs.spec import GradientBoostedTreesSpec
from app.training.preprocessing import Preprocessor
from app.training.trees.binning import bin_edges, bins_per_feature, sample_rows

# LightGBM's bin_construct_sample_cnt; fewer rows per column for a wide table, so the
# sample stays within EDGE_SAMPLE_VALUES values.
EDGE_SAMPLE_ROWS = 200_000
EDGE_SAMPLE_VALUES = 50_000_000
# The histograms one shard sends in its largest round.
MAX_HISTOGRAM_BYTES = 512 * 2**20


class EdgeSample:
    """Feature values of the sampled training rows, gathered batch by batch."""

    def __init__(self, n_rows: int, n_features: int, seed: int) -> None:
        cap = max(10_000, min(EDGE_SAMPLE_ROWS, EDGE_SAMPLE_VALUES // max(n_features, 1)))
        self._chosen = np.zeros(n_rows, bool)
        self._chosen[sample_rows(n_rows, cap, seed)] = True
        self._columns: list[dict[str, np.ndarray]] = []

    def rows_of(self, offset: int, train: np.ndarray) -> np.ndarray:
        """Which of a batch's training rows (positions in the batch) are sampled."""
        return train[self._chosen[offset + train]]

    def add(self, columns: Mapping[str, np.ndarray]) -> None:
        self._columns.append(dict(columns))

    def edges(self, preprocessor: Preprocessor, max_bins: int) -> list[np.ndarray]:
        names = preprocessor.columns
        columns = {
            name: np.concatenate([part[name] for part in self._columns])
            if self._columns
            else np.empty(0)
            for name in names
        }
        values = preprocessor.transform(columns)
        return [bin_edges(values[:, j], max_bins) for j in range(values.shape[1])]


def histogram_bytes(model: GradientBoostedTreesSpec, edges: list[np.ndarray], outputs: int) -> int:
    """The bytes of histograms a shard sends in the round that builds the most nodes:
    half the deepest level's nodes (the smaller children), per tree grown at once."""
    deepest = 2 ** max(model.max_depth - 2, 0)
    return deepest * outputs * len(edges) * bins_per_feature(edges) * 2 * 8

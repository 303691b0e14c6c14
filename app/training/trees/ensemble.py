"""A trained tree ensemble as flat node arrays, and its vectorized prediction.

Every tree has the same node capacity, laid out as a heap (node i's children are
2i + 1 and 2i + 2), which is what level-by-level growth fills in; `left`/`right` are
stored anyway, so that the artifact reads as plain node arrays. A leaf has
`feature == -1`. Tree t adds its leaf values to output `tree_output[t]` (one output
for regression and binary classification, one per class for softmax).

A split tests the raw value, `value <= threshold`, or its bin, `bin <= threshold_bin`;
the two agree because `threshold` is the bin's upper edge. A missing value follows
`default_left`.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from app.training.protocol import StateDict
from app.training.trees.binning import MISSING_BIN

LEAF = -1
# Trees scored side by side: rows x TREE_BLOCK node indices at a time.
TREE_BLOCK = 32
# (trees, node, feature) -> which rows go left at their node.
LeftTest = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
NODE_ARRAYS = (
    "feature",
    "threshold_bin",
    "threshold",
    "default_left",
    "left",
    "right",
    "value",
    "gain",
)
ARRAYS = (*NODE_ARRAYS, "tree_output", "base_score")


def heap_capacity(max_depth: int) -> int:
    """Nodes of a full binary tree `max_depth` splits deep."""
    return 2 ** (max_depth + 1) - 1


@dataclass(frozen=True)
class TreeEnsemble:
    feature: np.ndarray  # int32 (trees, nodes)
    threshold_bin: np.ndarray  # int32
    threshold: np.ndarray  # float64
    default_left: np.ndarray  # bool
    left: np.ndarray  # int32, LEAF at leaves
    right: np.ndarray  # int32
    value: np.ndarray  # float64: the leaf's value, shrinkage applied
    gain: np.ndarray  # float64: the split's gain, 0 at leaves
    tree_output: np.ndarray  # int32 (trees,)
    base_score: np.ndarray  # float64 (outputs,)

    @classmethod
    def empty(cls, max_depth: int, base_score: np.ndarray) -> "TreeEnsemble":
        shape = (0, heap_capacity(max_depth))
        return cls(
            feature=np.full(shape, LEAF, np.int32),
            threshold_bin=np.zeros(shape, np.int32),
            threshold=np.zeros(shape, np.float64),
            default_left=np.zeros(shape, bool),
            left=np.full(shape, LEAF, np.int32),
            right=np.full(shape, LEAF, np.int32),
            value=np.zeros(shape, np.float64),
            gain=np.zeros(shape, np.float64),
            tree_output=np.zeros(0, np.int32),
            base_score=np.asarray(base_score, np.float64),
        )

    @property
    def n_trees(self) -> int:
        return int(self.feature.shape[0])

    @property
    def max_depth(self) -> int:
        return int(np.log2(self.feature.shape[1] + 1)) - 1

    def _leaves(self, goes_left: LeftTest, rows: int) -> np.ndarray:
        """The leaf each row reaches in each tree: (rows, trees)."""
        trees = np.arange(self.n_trees)[None, :]
        node = np.zeros((rows, self.n_trees), np.int64)
        for _ in range(self.max_depth):
            feature = self.feature[trees, node]
            inner = feature != LEAF
            if not inner.any():
                break
            left = goes_left(trees, node, np.where(inner, feature, 0))
            child = np.where(left, self.left[trees, node], self.right[trees, node])
            node = np.where(inner, child, node)
        return node

    def _add_leaves(self, raw: np.ndarray, leaves: np.ndarray) -> None:
        """`raw` plus each tree's leaf values, added tree by tree in order: scores kept
        between rounds and extended by the new trees are then the very floats a
        scoring from scratch gives."""
        values = self.value[np.arange(self.n_trees)[None, :], leaves]
        for tree, output in enumerate(self.tree_output.tolist()):
            raw[:, output] += values[:, tree]

    def _blocks(self) -> list["TreeEnsemble"]:
        """The trees in blocks, so a (rows, trees) node matrix stays a few trees wide."""
        if self.n_trees <= TREE_BLOCK:
            return [self]
        return [
            self.trees(start, min(start + TREE_BLOCK, self.n_trees))
            for start in range(0, self.n_trees, TREE_BLOCK)
        ]

    def predict_raw(self, features: np.ndarray) -> np.ndarray:
        """Raw scores (rows, outputs) of float features, NaN for missing."""
        raw = np.tile(self.base_score, (features.shape[0], 1))
        for block in self._blocks():
            block._add_raw(raw, features)
        return raw

    def _add_raw(self, raw: np.ndarray, features: np.ndarray) -> None:
        rows = np.arange(features.shape[0])[:, None]

        def goes_left(trees: np.ndarray, node: np.ndarray, feature: np.ndarray) -> np.ndarray:
            values = features[rows, feature]
            return np.where(
                np.isnan(values),
                self.default_left[trees, node],
                values <= self.threshold[trees, node],
            )

        self._add_leaves(raw, self._leaves(goes_left, features.shape[0]))

    def predict_binned(self, binned: np.ndarray) -> np.ndarray:
        """Raw scores of binned features, as training sees them."""
        return self.add_binned(np.tile(self.base_score, (binned.shape[0], 1)), binned)

    def add_binned(self, raw: np.ndarray, binned: np.ndarray) -> np.ndarray:
        """`raw` (rows, outputs) plus this ensemble's trees' values for binned rows;
        `raw` is updated in place."""
        for block in self._blocks():
            block._add_binned(raw, binned)
        return raw

    def _add_binned(self, raw: np.ndarray, binned: np.ndarray) -> None:
        rows = np.arange(binned.shape[0])[:, None]

        def goes_left(trees: np.ndarray, node: np.ndarray, feature: np.ndarray) -> np.ndarray:
            bins = binned[rows, feature]
            return np.where(
                bins == MISSING_BIN,
                self.default_left[trees, node],
                bins <= self.threshold_bin[trees, node],
            )

        self._add_leaves(raw, self._leaves(goes_left, binned.shape[0]))

    def importance(self, n_features: int) -> dict[str, np.ndarray]:
        """Total gain and number of splits per feature."""
        inner = self.feature != LEAF
        features = self.feature[inner]
        return {
            "gain": np.bincount(features, weights=self.gain[inner], minlength=n_features),
            "split": np.bincount(features, minlength=n_features).astype(np.float64),
        }

    def trees(self, start: int, stop: int) -> "TreeEnsemble":
        """Trees `start` to `stop` (exclusive) as an ensemble of their own."""
        kept = {name: getattr(self, name)[start:stop] for name in (*NODE_ARRAYS, "tree_output")}
        return TreeEnsemble(**kept, base_score=self.base_score)

    def extended(self, more: "TreeEnsemble") -> "TreeEnsemble":
        """This ensemble followed by `more`'s trees (its base score is ignored)."""
        grown = {
            name: np.concatenate([getattr(self, name), getattr(more, name)])
            for name in (*NODE_ARRAYS, "tree_output")
        }
        return TreeEnsemble(**grown, base_score=self.base_score)

    def to_state(self) -> StateDict:
        """Tensors for safetensors: the same bytes for the same ensemble."""
        state = {
            name: torch.from_numpy(np.ascontiguousarray(getattr(self, name))) for name in ARRAYS
        }
        state["default_left"] = state["default_left"].to(torch.uint8)
        return state

    @classmethod
    def from_state(cls, state: StateDict) -> "TreeEnsemble":
        arrays = {name: state[name].numpy() for name in ARRAYS}
        arrays["default_left"] = arrays["default_left"].astype(bool)
        return cls(**arrays)

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

from dataclasses import dataclass

import numpy as np
import torch

from app.training.protocol import StateDict
from app.training.trees.kernels import LEAF, add_trees_binned, add_trees_raw

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

    def predict_raw(self, features: np.ndarray) -> np.ndarray:
        """Raw scores (rows, outputs) of float features, NaN for missing."""
        raw = np.tile(self.base_score, (features.shape[0], 1))
        add_trees_raw(
            self.feature,
            self.threshold,
            self.default_left,
            self.left,
            self.right,
            self.value,
            self.tree_output,
            np.ascontiguousarray(features),
            raw,
        )
        return raw

    def predict_binned(self, binned: np.ndarray) -> np.ndarray:
        """Raw scores of binned features, as training sees them."""
        return self.add_binned(np.tile(self.base_score, (binned.shape[0], 1)), binned)

    def add_binned(self, raw: np.ndarray, binned: np.ndarray) -> np.ndarray:
        """`raw` (rows, outputs) plus this ensemble's trees' values for binned rows,
        added tree by tree in order: scores kept between rounds and extended by the new
        trees are then the very floats a scoring from scratch gives. `raw` is updated
        in place."""
        add_trees_binned(
            self.feature,
            self.threshold_bin,
            self.default_left,
            self.left,
            self.right,
            self.value,
            self.tree_output,
            np.ascontiguousarray(binned),
            raw,
        )
        return raw

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

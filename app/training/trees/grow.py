"""One tree grown level by level from histograms summed over shards. `split_level`,
`frontier_of` and `route_rows` are the steps the distributed learner
(`policy.BoostedTreesPolicy`) runs one per round; `grow_tree` runs them in one place.
Each level, every shard builds the histograms of the smaller child of each new split
(the other is the parent's minus it), the sums pick the splits, and the rows move down.

The shards' sums are added in shard order, so a tree depends on the rows, not on how
they were dealt out, beyond the last bits of float64 sums.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from app.training.trees.ensemble import LEAF, TreeEnsemble, heap_capacity
from app.training.trees.histograms import (
    GRADIENT,
    HESSIAN,
    build_histograms,
    sibling_histogram,
    sum_histograms,
)
from app.training.trees.kernels import route_binned
from app.training.trees.splits import Split, SplitRules, best_split, leaf_weight


@dataclass(frozen=True)
class ShardRows:
    binned: np.ndarray  # uint8 (rows, features)
    gradients: np.ndarray  # float64 (rows,)
    hessians: np.ndarray  # float64 (rows,)


@dataclass
class GrownTree:
    """One tree's node arrays, heap-indexed, before thresholds get their raw values."""

    feature: np.ndarray
    threshold_bin: np.ndarray
    default_left: np.ndarray
    left: np.ndarray
    right: np.ndarray
    value: np.ndarray
    gain: np.ndarray

    @classmethod
    def empty(cls, max_depth: int) -> "GrownTree":
        nodes = heap_capacity(max_depth)
        return cls(
            feature=np.full(nodes, LEAF, np.int32),
            threshold_bin=np.zeros(nodes, np.int32),
            default_left=np.zeros(nodes, bool),
            left=np.full(nodes, LEAF, np.int32),
            right=np.full(nodes, LEAF, np.int32),
            value=np.zeros(nodes, np.float64),
            gain=np.zeros(nodes, np.float64),
        )

    def set_split(self, node: int, split: Split) -> None:
        self.feature[node], self.threshold_bin[node] = split.feature, split.threshold_bin
        self.default_left[node], self.gain[node] = split.default_left, split.gain
        self.left[node], self.right[node] = 2 * node + 1, 2 * node + 2

    def set_leaf(self, node: int, value: float) -> None:
        self.value[node] = value


@dataclass(frozen=True)
class NextLevel:
    """What the next level needs: the nodes whose histograms the shards build (the
    smaller child of each split) and, in the same order, their parents' histograms."""

    build: list[int]
    parents: list[np.ndarray]


def leaf_value(histogram: np.ndarray, l2: float, learning_rate: float) -> float:
    """A node's leaf value from its histogram's totals, shrinkage applied."""
    totals = histogram[0].sum(axis=0)
    return learning_rate * leaf_weight(float(totals[GRADIENT]), float(totals[HESSIAN]), l2)


def frontier_of(
    built: np.ndarray, histograms: np.ndarray, parents: np.ndarray | None
) -> dict[int, np.ndarray]:
    """The nodes of a level with their histograms, in node order: the built children
    and, below the root, each one's sibling as the parent's histogram minus it."""
    frontier: dict[int, np.ndarray] = {}
    for index, node in enumerate(built.tolist()):
        frontier[node] = histograms[index]
        if parents is not None:
            sibling = node + 1 if node % 2 == 1 else node - 1
            frontier[sibling] = sibling_histogram(parents[index], histograms[index])
    return dict(sorted(frontier.items()))


def split_level(
    tree: GrownTree,
    frontier: dict[int, np.ndarray],
    *,
    rules: SplitRules,
    learning_rate: float,
    last_level: bool,
    features: np.ndarray | None = None,
) -> NextLevel:
    """Split each node of the level, or make it a leaf. At the last level a split's
    children are leaves at once, valued from the split's own sums."""
    build, parents = [], []
    for node, histogram in frontier.items():
        split = best_split(histogram, rules, features)
        if split is None:
            tree.set_leaf(node, leaf_value(histogram, rules.l2, learning_rate))
            continue
        tree.set_split(node, split)
        left, right = 2 * node + 1, 2 * node + 2
        if last_level:
            tree.set_leaf(left, learning_rate * split.left_weight)
            tree.set_leaf(right, learning_rate * split.right_weight)
            continue
        # Build the child with less hessian weight (fewer rows, for squared error);
        # the sibling is the parent's histogram minus it.
        build.append(left if hessian_share_left(histogram, split) <= 0.5 else right)
        parents.append(histogram)
    return NextLevel(build, parents)


def route_rows(binned: np.ndarray, tree: GrownTree, levels: int) -> np.ndarray:
    """Each row's node, `levels` splits down `tree` (or the leaf it stopped at)."""
    return route_binned(
        tree.feature,
        tree.threshold_bin,
        tree.default_left,
        tree.left,
        tree.right,
        np.ascontiguousarray(binned),
        levels,
    )


def _summed(
    shards: Sequence[ShardRows], row_nodes: list[np.ndarray], nodes: np.ndarray, n_bins: int
) -> np.ndarray:
    return sum_histograms(
        [
            build_histograms(s.binned, s.gradients, s.hessians, where, nodes, n_bins)
            for s, where in zip(shards, row_nodes, strict=True)
        ]
    )


def grow_tree(
    shards: Sequence[ShardRows],
    *,
    rules: SplitRules,
    max_depth: int,
    n_bins: int,
    learning_rate: float,
    features: np.ndarray | None = None,
) -> GrownTree:
    """Grow one tree; `features` restricts the splits to those columns."""
    tree = GrownTree.empty(max_depth)
    everywhere = [np.zeros(s.binned.shape[0], np.int64) for s in shards]
    frontier = {0: _summed(shards, everywhere, np.array([0]), n_bins)[0]}
    for depth in range(max_depth):
        step = split_level(
            tree,
            frontier,
            rules=rules,
            learning_rate=learning_rate,
            last_level=depth + 1 == max_depth,
            features=features,
        )
        if not step.build:
            break
        row_nodes = [route_rows(s.binned, tree, depth + 1) for s in shards]
        built = np.array(step.build)
        frontier = frontier_of(
            built, _summed(shards, row_nodes, built, n_bins), np.stack(step.parents)
        )
    return tree


def hessian_share_left(parent: np.ndarray, split: Split) -> float:
    """The share of the parent's hessian that the split sends left."""
    feature = parent[split.feature]
    left = feature[1 : split.threshold_bin + 1, HESSIAN].sum()
    if split.default_left:
        left += feature[0, HESSIAN]
    total = feature[:, HESSIAN].sum()
    return float(left / total) if total > 0 else 0.5


def to_ensemble(
    trees: Sequence[tuple[GrownTree, int]],
    *,
    edges: Sequence[np.ndarray],
    base_score: np.ndarray,
    max_depth: int,
) -> TreeEnsemble:
    """The grown trees, each with the output it adds to, as one ensemble whose
    thresholds are raw values (each split bin's upper edge) as well as bins."""
    if not trees:
        return TreeEnsemble.empty(max_depth, base_score)
    grown = [tree for tree, _output in trees]
    feature = np.stack([t.feature for t in grown])
    threshold_bin = np.stack([t.threshold_bin for t in grown])
    threshold = np.zeros(feature.shape, np.float64)
    for index in zip(*np.nonzero(feature != LEAF), strict=True):
        column_edges, upper = edges[int(feature[index])], int(threshold_bin[index]) - 1
        # Past the last edge every present value goes left: only missing ones go right.
        threshold[index] = column_edges[upper] if upper < column_edges.size else np.inf
    return TreeEnsemble(
        feature=feature,
        threshold_bin=threshold_bin,
        threshold=threshold,
        default_left=np.stack([t.default_left for t in grown]),
        left=np.stack([t.left for t in grown]),
        right=np.stack([t.right for t in grown]),
        value=np.stack([t.value for t in grown]),
        gain=np.stack([t.gain for t in grown]),
        tree_output=np.array([output for _tree, output in trees], np.int32),
        base_score=np.asarray(base_score, np.float64),
    )

"""Histogram gradient boosting on the round protocol: one round per tree level.

Round r's shards bin their rows, score them with the trees finished so far, route
them down the tree being grown, and return the gradient/hessian histograms of the
nodes the merge asked for (the smaller child of each new split). The merge sums the
histograms in shard order, derives each sibling as its parent's minus the built
child, picks the splits and names the next level's nodes. A softmax iteration grows
one tree per class side by side.

Every iteration takes exactly `max_depth` rounds, idle ones included when its trees
stop early, so a tree ends at each multiple of `max_depth` and early stopping, the
kept round and the round count need nothing but the round number.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from app.training.early_stopping import EarlyStopping, decide_on_validation
from app.training.metrics import score_classification, score_regression
from app.training.protocol import (
    Decision,
    Evaluation,
    Progress,
    RoundAggregate,
    RoundPolicy,
    ShardResult,
    StateDict,
)
from app.training.trees.binning import bin_matrix, bins_per_feature
from app.training.trees.ensemble import LEAF, TreeEnsemble, heap_capacity
from app.training.trees.grow import GrownTree, hessian_share_left, to_ensemble
from app.training.trees.histograms import GRADIENT, HESSIAN, build_histograms, sum_histograms
from app.training.trees.objectives import Objective
from app.training.trees.splits import SplitRules, best_split, leaf_weight

TREES, GROW = "trees.", "grow."


@dataclass(frozen=True, eq=False)
class BoostedTreesPolicy(RoundPolicy):
    edges: tuple[np.ndarray, ...]
    objective: Objective
    base_score: tuple[float, ...]
    n_trees: int
    max_depth: int
    learning_rate: float = 0.1
    rules: SplitRules = field(default_factory=SplitRules)
    colsample: float = 1.0
    seed: int = 0
    early_stopping: EarlyStopping | None = None
    rounds: int = field(init=False)

    aggregate_reads_previous: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounds", self.n_trees * self.max_depth)

    @property
    def _capacity(self) -> int:
        return heap_capacity(self.max_depth)

    @property
    def _n_bins(self) -> int:
        return bins_per_feature(list(self.edges))

    def initial_state(self) -> StateDict:
        ensemble = TreeEnsemble.empty(self.max_depth, np.array(self.base_score))
        return {**_prefixed(TREES, ensemble.to_state()), **self._fresh_iteration()}

    def _fresh_iteration(self) -> StateDict:
        outputs, nodes = self.objective.outputs, self._capacity
        return {
            GROW + "feature": torch.full((outputs, nodes), LEAF, dtype=torch.int32),
            GROW + "threshold_bin": torch.zeros((outputs, nodes), dtype=torch.int32),
            GROW + "default_left": torch.zeros((outputs, nodes), dtype=torch.uint8),
            GROW + "value": torch.zeros((outputs, nodes), dtype=torch.float64),
            GROW + "gain": torch.zeros((outputs, nodes), dtype=torch.float64),
            GROW + "level": torch.zeros(1, dtype=torch.int64),
            # Global node ids (tree * capacity + node) whose histograms shards build.
            GROW + "build": torch.arange(outputs, dtype=torch.int64) * nodes,
            GROW + "parents": torch.zeros(
                (0, len(self.edges), self._n_bins, 2), dtype=torch.float64
            ),
        }

    def train_shard(
        self,
        round_: int,
        shard: int,
        start: StateDict,
        features: np.ndarray,
        targets: np.ndarray,
        *,
        device: torch.device,
        should_stop: Callable[[], bool] | None = None,
    ) -> ShardResult:
        binned = bin_matrix(features, list(self.edges))
        raw = ensemble_of(start).predict_binned(binned)
        gradients, hessians = self.objective.gradients(raw, targets)
        build = start[GROW + "build"].numpy()
        level = int(start[GROW + "level"][0])
        histograms = np.zeros((build.size, len(self.edges), self._n_bins, 2))
        for output in range(self.objective.outputs):
            mine = build // self._capacity == output
            if not mine.any():
                continue
            row_nodes = _route(binned, start, output, level)
            histograms[mine] = build_histograms(
                binned,
                gradients[:, output],
                hessians[:, output],
                row_nodes,
                build[mine] % self._capacity,
                self._n_bins,
            )
        return ShardResult(
            shard=shard,
            state={"histograms": torch.from_numpy(histograms)},
            num_examples=len(targets),
            loss=self.objective.loss(raw, targets),
        )

    def aggregate(
        self, round_: int, previous: StateDict | None, results: Sequence[ShardResult]
    ) -> RoundAggregate:
        assert previous is not None, "the tree merge grows the previous state"
        summed = sum_histograms([r.state["histograms"].numpy() for r in results])
        grow = {name: tensor.clone() for name, tensor in previous.items() if name.startswith(GROW)}
        level = int(grow[GROW + "level"][0])
        build, parents = grow[GROW + "build"].numpy(), grow[GROW + "parents"].numpy()
        frontier: dict[int, np.ndarray] = {}
        for index, node in enumerate(build.tolist()):
            frontier[node] = summed[index]
            if level > 0:
                frontier[_sibling(node, self._capacity)] = parents[index] - summed[index]
        next_build, next_parents = [], []
        last_level = level + 1 == self.max_depth
        for node, histogram in sorted(frontier.items()):
            output, local = divmod(node, self._capacity)
            split = best_split(histogram, self.rules, self._columns(round_, output))
            if split is None:
                totals = histogram[0].sum(axis=0)
                weight = leaf_weight(float(totals[GRADIENT]), float(totals[HESSIAN]), self.rules.l2)
                grow[GROW + "value"][output, local] = self.learning_rate * weight
                continue
            grow[GROW + "feature"][output, local] = split.feature
            grow[GROW + "threshold_bin"][output, local] = split.threshold_bin
            grow[GROW + "default_left"][output, local] = int(split.default_left)
            grow[GROW + "gain"][output, local] = split.gain
            left, right = 2 * local + 1, 2 * local + 2
            if last_level:
                grow[GROW + "value"][output, left] = self.learning_rate * split.left_weight
                grow[GROW + "value"][output, right] = self.learning_rate * split.right_weight
                continue
            # Build the child with less hessian weight; the other is parent minus it.
            smaller = left if hessian_share_left(histogram, split) <= 0.5 else right
            next_build.append(output * self._capacity + smaller)
            next_parents.append(histogram)
        state = {name: t for name, t in previous.items() if name.startswith(TREES)}
        if last_level:
            state.update(self._finished(previous, grow))
        else:
            grow[GROW + "level"][0] = level + 1
            grow[GROW + "build"] = torch.tensor(next_build, dtype=torch.int64)
            if next_parents:
                grow[GROW + "parents"] = torch.from_numpy(np.stack(next_parents))
            else:
                grow[GROW + "parents"] = self._fresh_iteration()[GROW + "parents"]
            state.update(grow)
        examples = sum(r.num_examples for r in results)
        train_loss = sum(r.loss * r.num_examples for r in results) / examples if examples else None
        return RoundAggregate(
            state=state, train_loss=train_loss, used=[r.shard for r in results], excluded=[]
        )

    def _finished(self, previous: StateDict, grow: StateDict) -> StateDict:
        """The iteration's trees appended to the ensemble, and a fresh iteration."""
        ensemble = ensemble_of(previous)
        trees: list[tuple[GrownTree, int]] = []
        for tree in range(ensemble.n_trees):
            trees.append((_grown(ensemble, tree), int(ensemble.tree_output[tree])))
        for output in range(self.objective.outputs):
            grown = GrownTree.empty(self.max_depth)
            grown.feature[:] = grow[GROW + "feature"][output].numpy()
            grown.threshold_bin[:] = grow[GROW + "threshold_bin"][output].numpy()
            grown.default_left[:] = grow[GROW + "default_left"][output].numpy().astype(bool)
            grown.value[:] = grow[GROW + "value"][output].numpy()
            grown.gain[:] = grow[GROW + "gain"][output].numpy()
            inner = np.flatnonzero(grown.feature != LEAF)
            grown.left[inner], grown.right[inner] = 2 * inner + 1, 2 * inner + 2
            trees.append((grown, output))
        merged = to_ensemble(
            trees,
            edges=self.edges,
            base_score=np.array(self.base_score),
            max_depth=self.max_depth,
        )
        return {**_prefixed(TREES, merged.to_state()), **self._fresh_iteration()}

    def _columns(self, round_: int, output: int) -> np.ndarray | None:
        """The columns one tree may split on: a seeded draw per tree, so every level
        of it, on every worker, sees the same ones."""
        if self.colsample >= 1.0:
            return None
        iteration = (round_ - 1) // self.max_depth
        count = max(1, round(self.colsample * len(self.edges)))
        rng = np.random.default_rng([self.seed, iteration, output])
        return np.sort(rng.choice(len(self.edges), size=count, replace=False))

    def evaluate(
        self,
        state: StateDict,
        features: np.ndarray,
        targets: np.ndarray,
        *,
        device: torch.device | None = None,
    ) -> Evaluation | None:
        if len(targets) == 0:
            return None
        raw = ensemble_of(state).predict_raw(features)
        predictions = self.objective.predict(raw)
        if self.objective.name == "squared_error":
            scores = score_regression(targets, predictions[:, 0])
        else:
            labels = targets.astype(np.int64)
            if self.objective.name == "logistic":
                predictions = np.hstack([1 - predictions, predictions])
            scores = score_classification(labels, predictions)
        return Evaluation(
            loss=self.objective.loss(raw, targets),
            metrics=scores.values,
            unavailable=scores.unavailable,
        )

    def decide(self, round_: int, evaluation: Evaluation | None, progress: Progress) -> Decision:
        best_round = progress.best_round if progress.best_round is not None else 0
        if round_ % self.max_depth != 0:
            # Mid-tree: the ensemble has not changed since the last tree ended.
            return Decision(best_round, progress.best_val_loss, finish=False)
        return decide_on_validation(
            round_,
            evaluation,
            progress,
            last_round=self.rounds,
            early_stopping=self.early_stopping,
            rounds_per_step=self.max_depth,
        )


def _prefixed(prefix: str, state: StateDict) -> StateDict:
    return {prefix + name: tensor for name, tensor in state.items()}


def ensemble_of(state: StateDict) -> TreeEnsemble:
    """The finished trees a state holds (the tree being grown left out)."""
    return TreeEnsemble.from_state(
        {name[len(TREES) :]: t for name, t in state.items() if name.startswith(TREES)}
    )


def _grown(ensemble: TreeEnsemble, tree: int) -> GrownTree:
    return GrownTree(
        feature=ensemble.feature[tree],
        threshold_bin=ensemble.threshold_bin[tree],
        default_left=ensemble.default_left[tree],
        left=ensemble.left[tree],
        right=ensemble.right[tree],
        value=ensemble.value[tree],
        gain=ensemble.gain[tree],
    )


def _route(binned: np.ndarray, state: StateDict, output: int, level: int) -> np.ndarray:
    """Each row's node, `level` splits down the tree being grown for `output`."""
    feature = state[GROW + "feature"][output].numpy()
    threshold = state[GROW + "threshold_bin"][output].numpy()
    default_left = state[GROW + "default_left"][output].numpy().astype(bool)
    rows = np.arange(binned.shape[0])
    node = np.zeros(binned.shape[0], np.int64)
    for _ in range(level):
        split_on = feature[node]
        inner = split_on != LEAF
        bins = binned[rows, np.where(inner, split_on, 0)]
        left = np.where(bins == 0, default_left[node], bins <= threshold[node])
        node = np.where(inner, np.where(left, 2 * node + 1, 2 * node + 2), node)
    return node


def _sibling(node: int, capacity: int) -> int:
    """The other child of the same parent, in global ids (tree * capacity + node)."""
    tree, local = divmod(node, capacity)
    return tree * capacity + (local + 1 if local % 2 == 1 else local - 1)

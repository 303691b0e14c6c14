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

Shards and evaluation rows come binned (uint8, `binning.bin_matrix`): binning happens
once, where every training row was visible. The bin edges travel in the global state
(`bins.*`), which is how the merge turns a split bin into a raw threshold and how the
finished model predicts raw values. Row subsampling draws each tree's rows by their
global row index, so a row is in or out of a tree whatever shard holds it.
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
    NoUsableResultsError,
    Progress,
    RoundAggregate,
    RoundPolicy,
    ShardResult,
    StateDict,
)
from app.training.trees.binning import bins_per_feature, edges_table
from app.training.trees.ensemble import TreeEnsemble, heap_capacity
from app.training.trees.grow import GrownTree, frontier_of, route_rows, split_level, to_ensemble
from app.training.trees.histograms import build_histograms, sum_histograms
from app.training.trees.objectives import Objective
from app.training.trees.scores import evaluated, scores_of
from app.training.trees.splits import SplitRules

TREES, GROW, BINS = "trees.", "grow.", "bins."
GROWN_ARRAYS = ("feature", "threshold_bin", "default_left", "left", "right", "value", "gain")


class IncompleteRoundError(NoUsableResultsError):
    """A shard's histograms are missing: a split picked from the others' would differ
    from the tree the whole data gives, so the round is not merged."""


@dataclass(frozen=True, eq=False)
class BoostedTreesPolicy(RoundPolicy):
    objective: Objective
    base_score: tuple[float, ...]
    n_trees: int
    max_depth: int
    learning_rate: float = 0.1
    rules: SplitRules = field(default_factory=SplitRules)
    colsample: float = 1.0
    subsample: float = 1.0
    seed: int = 0
    early_stopping: EarlyStopping | None = None
    # How many shards every round must hear from; None takes whatever arrives.
    shards: int | None = None
    # Written into round 0's state when given; the service's prepare writes them itself.
    edges: tuple[np.ndarray, ...] | None = None
    rounds: int = field(init=False)

    aggregate_reads_previous: ClassVar[bool] = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "rounds", self.n_trees * self.max_depth)

    @property
    def _capacity(self) -> int:
        return heap_capacity(self.max_depth)

    def initial_state(self) -> StateDict:
        ensemble = TreeEnsemble.empty(self.max_depth, np.array(self.base_score))
        state = {**_prefixed(TREES, ensemble.to_state()), **self._fresh_iteration()}
        if self.edges is not None:
            state.update(edges_state(self.edges))
        return state

    def warm_state(self, model_state: StateDict) -> StateDict:
        """Boosting goes on from the model's trees: they score every row first, and
        this job's trees are added after them (its edges must be the model's)."""
        ensemble = TreeEnsemble.from_state(model_state)
        state = {**_prefixed(TREES, ensemble.to_state()), **self._fresh_iteration()}
        if self.edges is not None:
            state.update(edges_state(self.edges))
        return state

    def _fresh_iteration(self) -> StateDict:
        trees = [GrownTree.empty(self.max_depth) for _ in range(self.objective.outputs)]
        roots = [output * self._capacity for output in range(self.objective.outputs)]
        return self._growing_state(trees, level=0, build=roots, parents=[])

    def _growing_state(
        self, trees: list[GrownTree], *, level: int, build: list[int], parents: list[np.ndarray]
    ) -> StateDict:
        """The trees being grown (one per output), the level the shards build next, the
        global node ids (output * capacity + node) they build, and those nodes'
        parents' histograms."""
        state = {
            GROW + name: torch.from_numpy(np.stack([getattr(t, name) for t in trees]))
            for name in GROWN_ARRAYS
        }
        state[GROW + "default_left"] = state[GROW + "default_left"].to(torch.uint8)
        return {
            **state,
            GROW + "level": torch.tensor([level], dtype=torch.int64),
            GROW + "build": torch.tensor(build, dtype=torch.int64),
            GROW + "parents": torch.from_numpy(
                np.stack(parents) if parents else np.zeros((0, 0, 0, 2))
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
        rows: np.ndarray | None = None,
    ) -> ShardResult:
        binned = features
        ensemble = ensemble_of(start)
        raw = scores_of(ensemble, binned)
        gradients, hessians = self.objective.gradients(raw, targets)
        build = start[GROW + "build"].numpy()
        level = int(start[GROW + "level"][0])
        trees = _growing(start)
        n_bins = bins_per_feature(edges_of(start))
        histograms = np.zeros((build.size, binned.shape[1], n_bins, 2))
        sampled = self._sampled_rows(round_, rows, len(targets))
        for output in range(self.objective.outputs):
            mine = build // self._capacity == output
            if not mine.any():
                continue
            row_nodes = route_rows(binned, trees[output], level)
            if sampled is not None:
                row_nodes[~sampled] = -1
            histograms[mine] = build_histograms(
                binned,
                gradients[:, output],
                hessians[:, output],
                row_nodes,
                build[mine] % self._capacity,
                n_bins,
            )
        return ShardResult(
            shard=shard,
            state={"histograms": torch.from_numpy(histograms)},
            num_examples=len(targets),
            # The same for every level of a tree: computed at its first.
            loss=evaluated(
                ensemble, binned, targets, self.objective.loss, context=f"loss {self.objective!r}"
            ),
        )

    def aggregate(
        self, round_: int, previous: StateDict | None, results: Sequence[ShardResult]
    ) -> RoundAggregate:
        assert previous is not None, "the tree merge grows the previous state"
        heard = sorted(r.shard for r in results)
        if self.shards is not None and heard != list(range(self.shards)):
            missing = sorted(set(range(self.shards)) - set(heard))
            raise IncompleteRoundError(
                f"round {round_}: no histograms from shard(s) {missing}; a tree needs every shard's"
            )
        if not results:
            raise IncompleteRoundError(f"round {round_}: no shard sent histograms")
        summed = sum_histograms([r.state["histograms"].numpy() for r in results])
        trees = _growing(previous)
        level = int(previous[GROW + "level"][0])
        build, parents = previous[GROW + "build"].numpy(), previous[GROW + "parents"].numpy()
        last_level = level + 1 == self.max_depth
        next_build: list[int] = []
        next_parents: list[np.ndarray] = []
        for output, tree in enumerate(trees):
            mine = build // self._capacity == output
            frontier = frontier_of(
                build[mine] % self._capacity, summed[mine], parents[mine] if level > 0 else None
            )
            step = split_level(
                tree,
                frontier,
                rules=self.rules,
                learning_rate=self.learning_rate,
                last_level=last_level,
                features=self._columns(round_, output, len(edges_of(previous))),
            )
            next_build += [output * self._capacity + node for node in step.build]
            next_parents += step.parents
        state = {name: t for name, t in previous.items() if name.startswith((TREES, BINS))}
        if last_level:
            state.update(self._finished(previous, trees))
        else:
            state.update(
                self._growing_state(trees, level=level + 1, build=next_build, parents=next_parents)
            )
        examples = sum(r.num_examples for r in results)
        train_loss = sum(r.loss * r.num_examples for r in results) / examples if examples else None
        return RoundAggregate(
            state=state, train_loss=train_loss, used=[r.shard for r in results], excluded=[]
        )

    def _finished(self, previous: StateDict, trees: list[GrownTree]) -> StateDict:
        """The iteration's trees appended to the ensemble, and a fresh iteration."""
        new = to_ensemble(
            [(tree, output) for output, tree in enumerate(trees)],
            edges=edges_of(previous),
            base_score=np.array(self.base_score),
            max_depth=self.max_depth,
        )
        merged = ensemble_of(previous).extended(new)
        return {**_prefixed(TREES, merged.to_state()), **self._fresh_iteration()}

    def _columns(self, round_: int, output: int, n_features: int) -> np.ndarray | None:
        """The columns one tree may split on: a seeded draw per tree, so every level
        of it, on every worker, sees the same ones."""
        if self.colsample >= 1.0:
            return None
        iteration = (round_ - 1) // self.max_depth
        count = max(1, round(self.colsample * n_features))
        rng = np.random.default_rng([self.seed, iteration, output])
        return np.sort(rng.choice(n_features, size=count, replace=False))

    def _sampled_rows(self, round_: int, rows: np.ndarray | None, count: int) -> np.ndarray | None:
        """Which of a shard's rows this iteration's trees see (None: all of them)."""
        if self.subsample >= 1.0:
            return None
        if rows is None or len(rows) != count:
            raise ValueError("row subsampling needs each row's global index")
        iteration = (round_ - 1) // self.max_depth
        return row_uniforms(rows, self.seed, iteration) < self.subsample

    def evaluate(
        self,
        state: StateDict,
        features: np.ndarray,
        targets: np.ndarray,
        *,
        device: torch.device | None = None,
    ) -> Evaluation | None:
        """`features` binned, as the shards are. Rows of a class never seen in
        training (-1) are skipped, as the parametric learner skips them."""
        return evaluated(
            ensemble_of(state), features, targets, self._evaluation, context=repr(self.objective)
        )

    def _evaluation(self, raw: np.ndarray, targets: np.ndarray) -> Evaluation | None:
        if self.objective.name != "squared_error":
            keep = targets >= 0
            if not keep.all():
                raw, targets = raw[keep], targets[keep]
        if len(targets) == 0:
            return None
        predictions = self.objective.served(raw)
        if self.objective.name == "squared_error":
            scores = score_regression(targets, predictions)
        else:
            scores = score_classification(targets.astype(np.int64), predictions)
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

    def model_state(self, state: StateDict) -> StateDict:
        return ensemble_of(state).to_state()

    def feature_importance(self, state: StateDict) -> dict[str, np.ndarray]:
        return ensemble_of(state).importance(len(edges_of(state)))


def row_uniforms(rows: np.ndarray, seed: int, iteration: int) -> np.ndarray:
    """A uniform in [0, 1) per global row index, for one iteration: SplitMix64 of the
    row index mixed with the seed and iteration, computed the same on every machine and
    never from a generator's position, so a shard draws its rows alone."""
    key = np.uint64((seed * 0x9E3779B1 + iteration * 0x85EBCA77 + 1) & 0xFFFFFFFFFFFFFFFF)
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + key
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * 2.0**-53


def edges_state(edges: Sequence[np.ndarray]) -> StateDict:
    """Bin edges as two tensors: (features, most edges) padded with +inf, and counts."""
    table, counts = edges_table(list(edges))
    return {BINS + "edges": torch.from_numpy(table), BINS + "counts": torch.from_numpy(counts)}


def edges_of(state: StateDict) -> list[np.ndarray]:
    table, counts = state[BINS + "edges"].numpy(), state[BINS + "counts"].numpy()
    return [table[column, :count] for column, count in enumerate(counts.tolist())]


def _prefixed(prefix: str, state: StateDict) -> StateDict:
    return {prefix + name: tensor for name, tensor in state.items()}


def ensemble_of(state: StateDict) -> TreeEnsemble:
    """The finished trees a state holds (the tree being grown left out)."""
    return TreeEnsemble.from_state(
        {name[len(TREES) :]: t for name, t in state.items() if name.startswith(TREES)}
    )


def _growing(state: StateDict) -> list[GrownTree]:
    """Copies of the trees a state is growing, one per output."""
    arrays = {name: state[GROW + name].numpy() for name in GROWN_ARRAYS}
    arrays["default_left"] = arrays["default_left"].astype(bool)
    outputs = arrays["feature"].shape[0]
    return [GrownTree(**{n: a[k].copy() for n, a in arrays.items()}) for k in range(outputs)]

"""Today's learner on the round protocol: a torch network trained by local SGD on every
shard and merged by FedAvg or a robust strategy (McMahan et al., 2017).

Round r's shard s trains from round r-1's merged weights with the seed
`shard_seed(seed, r, s)`; the merge sums in shard order in float64. Both are
functions of their inputs only, so a redelivered shard task or a re-run merge writes
the bytes it wrote the first time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from app.merge import merge_results
from app.training.loop import TrainConfig, evaluate, train_local
from app.training.networks import NetworkConfig, initial_state
from app.training.protocol import (
    Decision,
    Evaluation,
    Progress,
    RoundAggregate,
    RoundPolicy,
    ShardResult,
    StateDict,
)

__all__ = ["EarlyStopping", "ParametricPolicy", "shard_seed"]


def shard_seed(seed: int, round_: int, shard: int) -> int:
    """The training seed of one shard in one round, from the job's seed alone."""
    return int(np.random.SeedSequence([seed, round_, shard]).generate_state(1)[0])


@dataclass(frozen=True)
class EarlyStopping:
    """Stop once `patience` rounds in a row failed to lower the best validation loss
    by more than `min_delta`."""

    patience: int
    min_delta: float = 0.0


@dataclass(frozen=True)
class ParametricPolicy(RoundPolicy):
    network: NetworkConfig
    train: TrainConfig
    seed: int
    rounds: int
    aggregation: str = "fedavg"
    trim_fraction: float = 0.1
    early_stopping: EarlyStopping | None = None
    # Mean and deviation of a standardized regression target, so that metrics are
    # reported in the target's own units; (0, 1) for classification.
    target_scale: tuple[float, float] = (0.0, 1.0)

    def initial_state(self) -> StateDict:
        return initial_state(self.network, self.seed)

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
        local = train_local(
            self.network,
            start,
            features,
            targets,
            self.train,
            seed=shard_seed(self.seed, round_, shard),
            device=device,
            should_stop=should_stop,
        )
        return ShardResult(
            shard=shard, state=local.state, num_examples=local.num_examples, loss=local.loss
        )

    def aggregate(
        self, round_: int, previous: StateDict | None, results: Sequence[ShardResult]
    ) -> RoundAggregate:
        merged = merge_results(
            self.aggregation,
            [(result.state, result.num_examples) for result in results],
            trim_fraction=self.trim_fraction,
        )
        used = [results[index] for index in merged.used]
        examples = sum(result.num_examples for result in used)
        train_loss = (
            sum(result.loss * result.num_examples for result in used) / examples
            if examples
            else None
        )
        return RoundAggregate(
            state=merged.state,
            train_loss=train_loss,
            used=[result.shard for result in used],
            excluded=[results[index].shard for index in merged.excluded],
        )

    def evaluate(
        self,
        state: StateDict,
        features: np.ndarray,
        targets: np.ndarray,
        *,
        device: torch.device | None = None,
    ) -> Evaluation | None:
        return evaluate(
            self.network,
            state,
            features,
            targets,
            self.train.task,
            target_scale=self.target_scale,
            device=device,
        )

    def decide(self, round_: int, evaluation: Evaluation | None, progress: Progress) -> Decision:
        # Without validation rows there is nothing to compare: the latest round is best.
        if evaluation is None:
            return Decision(round_, progress.best_val_loss, finish=round_ >= self.rounds)
        min_delta = self.early_stopping.min_delta if self.early_stopping else 0.0
        best = progress.best_val_loss
        if best is None or evaluation.loss < best - min_delta:
            return Decision(round_, evaluation.loss, finish=round_ >= self.rounds)
        best_round = progress.best_round or 0
        stalled = self.early_stopping is not None and (
            round_ - best_round >= self.early_stopping.patience
        )
        return Decision(
            best_round,
            best,
            finish=stalled or round_ >= self.rounds,
            early_stopped=stalled,
        )

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
from app.training.early_stopping import EarlyStopping, decide_on_validation
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
        rows: np.ndarray | None = None,
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
        return decide_on_validation(
            round_,
            evaluation,
            progress,
            last_round=self.rounds,
            early_stopping=self.early_stopping,
        )

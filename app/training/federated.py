"""Federated training in one process, through the same round policy the workers run.

The service runs round r as a Celery chord: one shard task per shard calling
`RoundPolicy.train_shard` from the global state of round r-1, then one merge calling
`aggregate`, `evaluate` and `decide` over the results in shard order. `run_rounds`
runs exactly that sequence in a loop, so benchmarks and tests measure the numerics of
a job without Redis, SQL or Celery; `fit_federated` does so for the parametric learner.
Pure: torch and numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from app.training.loop import TrainConfig
from app.training.networks import NetworkConfig
from app.training.parametric import ParametricPolicy
from app.training.protocol import Progress, RoundPolicy, StateDict

__all__ = ["FederatedResult", "RoundCallback", "fit_federated", "run_rounds"]

# Called after each merge with the round number (1-based) and the merged state.
RoundCallback = Callable[[int, StateDict], None]


@dataclass(frozen=True)
class FederatedResult:
    """The global state after the last round.

    `history` holds the validation loss of the merged model after each round (empty
    without a validation split); `train_losses` the example-weighted mean of the
    merged shards' training losses in each round (NaN where none had examples);
    `best_round` the round the policy would keep (None when no round ran).
    """

    state: StateDict
    rounds_run: int
    history: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)
    best_round: int | None = None


def run_rounds(
    policy: RoundPolicy,
    shards: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    device: torch.device | None = None,
    on_round: RoundCallback | None = None,
    shard_rows: Sequence[np.ndarray] | None = None,
) -> FederatedResult:
    """Run `policy` over in-memory shards until its `decide` finishes the job.
    `shard_rows` gives each shard's rows' global indices, for learners that sample by them."""
    if not shards:
        raise ValueError("a federated fit needs at least one shard")
    device = device or torch.device("cpu")
    state = policy.initial_state()
    progress = Progress()
    history: list[float] = []
    train_losses: list[float] = []
    rounds_run = 0
    for round_ in range(1, policy.rounds + 1):
        results = [
            policy.train_shard(
                round_,
                shard,
                state,
                features,
                targets,
                device=device,
                rows=None if shard_rows is None else shard_rows[shard],
            )
            for shard, (features, targets) in enumerate(shards)
        ]
        previous = state if policy.aggregate_reads_previous else None
        aggregate = policy.aggregate(round_, previous, results)
        state = aggregate.state
        train_losses.append(float("nan") if aggregate.train_loss is None else aggregate.train_loss)
        evaluation = None
        if validation is not None:
            evaluation = policy.evaluate(state, validation[0], validation[1], device=device)
            history.append(evaluation.loss if evaluation is not None else float("nan"))
        if on_round is not None:
            on_round(round_, state)
        decision = policy.decide(round_, evaluation, progress)
        progress = Progress(decision.best_round, decision.best_val_loss)
        rounds_run = round_
        if decision.finish:
            break
    return FederatedResult(
        state=state,
        rounds_run=rounds_run,
        history=history,
        train_losses=train_losses,
        best_round=progress.best_round,
    )


def fit_federated(
    network_config: NetworkConfig,
    shards: Sequence[tuple[np.ndarray, np.ndarray]],
    train_config: TrainConfig,
    *,
    rounds: int,
    seed: int,
    aggregation: str = "fedavg",
    trim_fraction: float = 0.1,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    device: torch.device | None = None,
    on_round: RoundCallback | None = None,
) -> FederatedResult:
    """`rounds` rounds of the parametric learner, without early stopping.

    Round 0's parameters are `initial_state(network_config, seed)`; in round r
    (1-based, as in the service) shard s trains with seed `shard_seed(seed, r, s)`.
    Regression targets are taken as given (in training units), so the validation loss
    is the mean squared error there.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be at least 0, got {rounds}")
    policy = ParametricPolicy(
        network=network_config,
        train=train_config,
        seed=seed,
        rounds=rounds,
        aggregation=aggregation,
        trim_fraction=trim_fraction,
    )
    return run_rounds(policy, shards, validation=validation, device=device, on_round=on_round)

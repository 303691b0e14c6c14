"""Federated training in one process, over the same functions the workers call.

The service runs round r as a Celery chord: one ``train_shard`` task per shard,
each calling :func:`app.training.loop.train_local` from the global parameters of
round r-1, then one ``merge_round`` calling :func:`app.merge.merge_results` over
the results in shard order. :func:`fit_federated` runs exactly that sequence in
a loop, with the same per-shard seeds, so benchmarks and tests measure the
numerics of a job without Redis, SQL or Celery. Pure: torch and numpy only.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from app.merge import merge_results
from app.training.loop import StateDict, TrainConfig, evaluate, train_local
from app.training.networks import NetworkConfig, initial_state

__all__ = ["FederatedResult", "RoundCallback", "fit_federated", "shard_seed"]

# Called after each merge with the round number (1-based) and the merged state.
RoundCallback = Callable[[int, StateDict], None]


@dataclass(frozen=True)
class FederatedResult:
    """The merged parameters after the last round.

    ``history`` holds the validation loss of the merged model after each round
    (empty without a validation split); ``train_losses`` the example-weighted
    mean of the shards' training losses in each round.
    """

    state: StateDict
    rounds_run: int
    history: list[float] = field(default_factory=list)
    train_losses: list[float] = field(default_factory=list)


def shard_seed(seed: int, round_: int, shard: int) -> int:
    """The training seed of one shard in one round: the workers' shard stage and this
    loop both use this one function, so a job and its in-process replay train alike."""
    return int(np.random.SeedSequence([seed, round_, shard]).generate_state(1)[0])


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
    """Train ``rounds`` rounds of local training on every shard plus a merge.

    Round 0's parameters are ``initial_state(network_config, seed)``. In round
    r (1-based, as in the service) shard s trains from the merged parameters of
    round r-1 with seed ``shard_seed(seed, r, s)``; the results are merged in
    shard order with ``aggregation``. Regression targets are taken as given
    (in training units), so the validation loss is the mean squared error there.
    """
    if rounds < 0:
        raise ValueError(f"rounds must be at least 0, got {rounds}")
    if not shards:
        raise ValueError("fit_federated needs at least one shard")
    device = device or torch.device("cpu")
    state = initial_state(network_config, seed)
    history: list[float] = []
    train_losses: list[float] = []
    for round_ in range(1, rounds + 1):
        results = [
            train_local(
                network_config,
                state,
                features,
                targets,
                train_config,
                seed=shard_seed(seed, round_, shard),
                device=device,
            )
            for shard, (features, targets) in enumerate(shards)
        ]
        outcome = merge_results(
            aggregation,
            [(result.state, result.num_examples) for result in results],
            trim_fraction,
        )
        state = outcome.state
        seen = sum(result.num_examples for result in results)
        weighted = sum(result.loss * result.num_examples for result in results)
        train_losses.append(weighted / seen if seen else float("nan"))
        if validation is not None:
            evaluation = evaluate(
                network_config,
                state,
                validation[0],
                validation[1],
                train_config.task,
                device=device,
            )
            history.append(evaluation.loss if evaluation is not None else float("nan"))
        if on_round is not None:
            on_round(round_, state)
    return FederatedResult(
        state=state, rounds_run=rounds, history=history, train_losses=train_losses
    )

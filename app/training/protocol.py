"""The round protocol: what a learner must say for the service to train it across shards.

A job runs as rounds. In round r every shard task starts from the global state of
round r-1 and returns a `ShardResult`; one merge then aggregates the results in
shard order into round r's global state, evaluates it on the validation split and
decides whether round r+1 follows. The global state a round ends with is the next
round's configuration: for a parametric model it is the weights; for a histogram
tree learner it would be the trees so far plus the nodes to split, and its shard
results would be gradient histograms carried in the same tensor dicts.

A `RoundPolicy` is that sequence written once, as pure functions over typed values
(torch and numpy, no SQL, Redis or Celery), in the manner of Flower's Strategy. The
worker stages (`app.jobs.stages`: `train`, `merge`, `finalize`) load its inputs and persist
its outputs; `app.training.federated.fit_federated` runs it in memory. Both get the
same numbers because both call the same methods.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

StateDict = dict[str, torch.Tensor]

__all__ = [
    "Decision",
    "Evaluation",
    "NoUsableResultsError",
    "Progress",
    "RoundAggregate",
    "RoundPolicy",
    "ShardResult",
    "StateDict",
]


class NoUsableResultsError(ValueError):
    """Every shard result was excluded, so there is nothing to merge."""


@dataclass(frozen=True)
class Evaluation:
    """A global state scored on held-out rows: `loss` in training units (what early
    stopping compares), `metrics` in the target's own units."""

    loss: float
    # Finite values only; a metric that could not be computed is in `unavailable`,
    # with why, instead of being a NaN that turns into a silent null.
    metrics: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ShardResult:
    """What one shard returns from one round. `state` holds whatever the learner's
    merge consumes (parameters, or histograms); `loss` is the shard's training loss,
    a mean over its `num_examples`; `seconds` its wall time, for the round's record."""

    shard: int
    state: StateDict
    num_examples: int
    loss: float
    seconds: float = 0.0
    # The Celery worker that trained it (its node name), for the round's record.
    worker: str = ""


@dataclass(frozen=True)
class RoundAggregate:
    """A merged round: the new global state, the example-weighted training loss over
    the shards that went into it (None when none had examples), and which shards went
    in and which were left out (by shard number)."""

    state: StateDict
    train_loss: float | None
    used: list[int]
    excluded: list[int]


@dataclass(frozen=True)
class Progress:
    """What is known before a round's decision: the best round so far and its
    validation loss (both None before the first round)."""

    best_round: int | None = None
    best_val_loss: float | None = None


@dataclass(frozen=True)
class Decision:
    """After round `round`: the best round so far, and whether the job finalizes now.
    `early_stopped` says the stop came from early stopping rather than the last round."""

    best_round: int
    best_val_loss: float | None
    finish: bool
    early_stopped: bool = False


class RoundPolicy(ABC):
    """One learner's round semantics. Implementations are frozen values built from a
    job's spec and plan, so every worker that builds one computes the same thing.

    Exactness is the implementation's duty: `train_shard` must be a function of its
    arguments (seeded from the round and shard), and `aggregate` must sum in the order
    of `results`, which callers give by shard number; then a redelivered task or a
    re-run merge writes the bytes it wrote before.
    """

    # Whether `aggregate` reads the previous global state. Parametric merges do not,
    # and callers then skip loading it; a tree learner's merge grows the previous trees.
    aggregate_reads_previous: ClassVar[bool] = False

    # The most rounds the job runs; `decide` may finish earlier.
    rounds: int

    @abstractmethod
    def initial_state(self) -> StateDict:
        """Round 0's global state, which round 1's shards start from."""

    def warm_state(self, model_state: StateDict) -> StateDict:
        """Round 0's global state for a warm start from a model's `model_state` (what
        `model_state` returned when it was trained): for parameters, the parameters."""
        return dict(model_state)

    @abstractmethod
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
        """One shard's work in `round_`, from the global state of `round_ - 1`.
        `should_stop` is asked now and then; when it says yes the implementation
        raises `app.training.loop.TrainingStopped`. `rows` are the shard's rows' global
        indices, where the part has them, for a learner that samples rows by them."""

    @abstractmethod
    def aggregate(
        self, round_: int, previous: StateDict | None, results: Sequence[ShardResult]
    ) -> RoundAggregate:
        """Merge the results that arrived, in the order given. `previous` is round
        `round_ - 1`'s global state when `aggregate_reads_previous`, else None. Raises
        NoUsableResultsError when no result can be merged."""

    @abstractmethod
    def evaluate(
        self,
        state: StateDict,
        features: np.ndarray,
        targets: np.ndarray,
        *,
        device: torch.device | None = None,
    ) -> Evaluation | None:
        """Loss in training units and metrics in the target's units; None without rows."""

    @abstractmethod
    def decide(self, round_: int, evaluation: Evaluation | None, progress: Progress) -> Decision:
        """Keep the best round and say whether to stop after `round_`."""

    def model_state(self, state: StateDict) -> StateDict:
        """What of a kept round's global state the model artifact holds: all of it for
        a network; a tree learner leaves out the tree it was still growing."""
        return state

    def feature_importance(self, state: StateDict) -> dict[str, np.ndarray] | None:
        """Per feature, named measures of how much the model uses it (trees: total
        split gain and split count); None for a learner that has none."""
        return None

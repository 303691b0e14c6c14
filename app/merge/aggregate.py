"""Aggregation of shard parameters into one global state dict.

Each strategy is a pure function over ``(state_dict, num_examples)`` pairs and
works one parameter tensor at a time, so the extra memory a merge needs is about
one tensor per shard, never a second copy of every model. ``merge_results`` is
the policy on top: it drops shards that cannot be merged and applies a strategy
by name.

Arithmetic runs in float64 and is cast back to each tensor's own dtype at the
end: float32 sums over many shards would otherwise lose the low bits that
distinguish one round's model from the next.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from app.training.protocol import NoUsableResultsError, StateDict

# One shard's parameters and its example count: what a strategy weighs.
WeightedState = tuple[StateDict, int]
Strategy = Callable[[Sequence[WeightedState], float], StateDict]

__all__ = [
    "STRATEGIES",
    "MergeOutcome",
    "NoUsableResultsError",
    "StateDict",
    "Strategy",
    "WeightedState",
    "fedavg",
    "is_finite",
    "mean",
    "median",
    "merge_results",
    "trimmed_mean",
]


@dataclass(frozen=True)
class MergeOutcome:
    """The merged parameters and which input positions went into them."""

    state: StateDict
    used: list[int]
    excluded: list[int]


def fedavg(results: Sequence[WeightedState]) -> StateDict:
    """Average weighted by each shard's example count (McMahan et al., 2017).

    Shards differ in size when rows do not divide evenly, and weighting by
    examples makes the merge equal to one pass over the union of the shards.
    """
    states = _states_of(results)
    counts = [num_examples for _, num_examples in results]
    for index, count in enumerate(counts):
        if count < 0:
            raise ValueError(f"shard result {index} has a negative example count ({count})")
    total = sum(counts)
    if total == 0:
        raise ValueError("fedavg needs at least one shard result with examples")
    return _weighted_average(states, counts, total)


def mean(results: Sequence[WeightedState]) -> StateDict:
    """Unweighted average: every shard counts the same whatever its size."""
    states = _states_of(results)
    return _weighted_average(states, [1] * len(states), len(states))


def median(results: Sequence[WeightedState]) -> StateDict:
    """Coordinate-wise median, robust to a minority of diverged shards.

    For an even number of shards this is the mean of the two middle values, not
    the lower one that ``torch.median`` returns: the lower middle would bias
    every coordinate downwards.
    """
    states = _states_of(results)
    count = len(states)
    half = count // 2

    def middle(ordered: torch.Tensor) -> torch.Tensor:
        if count % 2:
            return ordered[half]
        return (ordered[half - 1] + ordered[half]) / 2

    return _reduce_sorted(states, middle)


def trimmed_mean(results: Sequence[WeightedState], trim_fraction: float) -> StateDict:
    """Coordinate-wise mean after dropping the extreme values on both sides.

    ``floor(trim_fraction * n)`` values are dropped from each end of every
    coordinate, so with few shards a small fraction trims nothing and this is
    the plain mean.
    """
    _check_trim_fraction(trim_fraction)
    states = _states_of(results)
    count = len(states)
    cut = math.floor(trim_fraction * count)
    return _reduce_sorted(states, lambda ordered: ordered[cut : count - cut].mean(dim=0))


def is_finite(state: StateDict) -> bool:
    """True when no tensor in ``state`` holds NaN or an infinity."""
    return all(bool(torch.isfinite(tensor).all()) for tensor in state.values())


STRATEGIES: dict[str, Strategy] = {
    "fedavg": lambda results, _trim_fraction: fedavg(results),
    "mean": lambda results, _trim_fraction: mean(results),
    "median": lambda results, _trim_fraction: median(results),
    "trimmed_mean": trimmed_mean,
}


def merge_results(
    strategy: str,
    results: Sequence[WeightedState],
    trim_fraction: float = 0.1,
) -> MergeOutcome:
    """Merge the usable shard results with the named strategy.

    A shard whose parameters hold NaN or an infinity diverged, and one with no
    examples learned nothing; either would poison every strategy except the
    robust ones, so both are excluded and reported rather than merged.

    Summation follows the order of ``results``. Floating-point addition is not
    associative, so the same results in another order could give a model that
    differs in the last bits; callers sort by shard index so that a merge
    re-run after a lost worker writes exactly the parameters it wrote before.
    """
    try:
        apply = STRATEGIES[strategy]
    except KeyError:
        known = ", ".join(sorted(STRATEGIES))
        raise ValueError(f"unknown merge strategy {strategy!r} (known: {known})") from None
    if strategy == "trimmed_mean":
        # A bad setting is a configuration error; report it even when every
        # shard is excluded, rather than hiding it behind NoUsableResultsError.
        _check_trim_fraction(trim_fraction)
    if results:
        # Checked before exclusion so that the indices in an error are the
        # caller's, and a shard with the wrong layout is reported as the bug
        # it is even when its values also diverged.
        _check_same_layout([state for state, _ in results])

    used: list[int] = []
    excluded: list[int] = []
    for index, (state, num_examples) in enumerate(results):
        if num_examples > 0 and is_finite(state):
            used.append(index)
        else:
            excluded.append(index)
    if not used:
        raise NoUsableResultsError(
            f"none of the {len(results)} shard results can be merged: "
            "each has non-finite parameters or no examples"
        )
    merged = apply([results[index] for index in used], trim_fraction)
    return MergeOutcome(state=merged, used=used, excluded=excluded)


def _check_trim_fraction(trim_fraction: float) -> None:
    # Written as a positive range test so that NaN fails it too.
    if not 0.0 <= trim_fraction < 0.5:
        raise ValueError(f"trim_fraction must be in [0, 0.5), got {trim_fraction}")


def _states_of(results: Sequence[WeightedState]) -> list[StateDict]:
    if not results:
        raise ValueError("cannot aggregate an empty list of shard results")
    states = [state for state, _ in results]
    _check_same_layout(states)
    return states


def _check_same_layout(states: Sequence[StateDict]) -> None:
    # Checked for every key before any arithmetic, so a mismatch costs no
    # tensor work and the error names the key instead of a broadcasting failure.
    reference = states[0]
    for index, state in enumerate(states[1:], start=1):
        missing = sorted(reference.keys() - state.keys())
        if missing:
            raise ValueError(f"state dict {index} lacks key {missing[0]!r} that state dict 0 has")
        extra = sorted(state.keys() - reference.keys())
        if extra:
            raise ValueError(f"state dict {index} has key {extra[0]!r} that state dict 0 lacks")
        for key, tensor in reference.items():
            shape = state[key].shape
            if shape != tensor.shape:
                raise ValueError(
                    f"key {key!r} has shape {tuple(shape)} in state dict {index} "
                    f"but {tuple(tensor.shape)} in state dict 0"
                )


def _weighted_average(states: Sequence[StateDict], weights: Sequence[int], total: int) -> StateDict:
    merged: StateDict = {}
    for key, first in states[0].items():
        accumulator = torch.zeros(first.shape, dtype=torch.float64, device=first.device)
        for state, weight in zip(states, weights, strict=True):
            accumulator.add_(state[key].to(torch.float64), alpha=weight)
        merged[key] = _cast_back(accumulator.div_(total), first.dtype)
    return merged


def _reduce_sorted(
    states: Sequence[StateDict], reduce: Callable[[torch.Tensor], torch.Tensor]
) -> StateDict:
    merged: StateDict = {}
    for key, first in states[0].items():
        # Filled in place rather than torch.stack over converted copies, which
        # would hold every shard's tensor twice at the peak.
        stacked = torch.empty((len(states), *first.shape), dtype=torch.float64, device=first.device)
        for row, state in zip(stacked, states, strict=True):
            row.copy_(state[key])
        ordered = torch.msort(stacked)
        del stacked
        merged[key] = _cast_back(reduce(ordered), first.dtype)
    return merged


def _cast_back(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    # Integer buffers (such as a batch counter) would otherwise be truncated
    # towards zero, so a mean of 2 and 3 would always land on 2.
    if dtype.is_floating_point:
        return tensor.to(dtype)
    return tensor.round().to(dtype)

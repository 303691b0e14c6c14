"""Pure aggregation of shard parameters: torch only, no I/O."""

from app.merge.aggregate import (
    STRATEGIES,
    MergeOutcome,
    NoUsableResultsError,
    StateDict,
    Strategy,
    WeightedState,
    fedavg,
    is_finite,
    mean,
    median,
    merge_results,
    trimmed_mean,
)

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

"""Pure aggregation of shard parameters: torch only, no I/O."""

from app.merge.aggregate import (
    STRATEGIES,
    MergeOutcome,
    NoUsableResultsError,
    ShardResult,
    StateDict,
    Strategy,
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
    "ShardResult",
    "StateDict",
    "Strategy",
    "fedavg",
    "is_finite",
    "mean",
    "median",
    "merge_results",
    "trimmed_mean",
]

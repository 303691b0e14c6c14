"""What preparing a job wrote: the parts' blob keys and sizes, the fitted preprocessing
and the network's shape. Stored on the job as JSON (`Job.plan`) and read back only
through `ShardPlan.from_dict`, so no stage looks up a key by name."""

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from app.training.networks import NetworkConfig
from app.training.preprocessing import Preprocessor


@dataclass(frozen=True)
class ShardPlan:
    preprocessor: Preprocessor
    network: NetworkConfig
    shard_keys: list[str]
    shard_rows: list[int]
    validation_key: str
    validation_rows: int
    holdout_key: str
    holdout_rows: int
    dropped_rows: int
    # What a learner's policy needs from prepare beyond the network's shape (trees:
    # the base score). Small: stored in the job's row.
    learner: dict[str, Any] = field(default_factory=dict)
    # Trees' bin edges, in memory only as prepare computed them: they travel in round
    # 0's state (`write_shards`), not in the job's row.
    edges: list[np.ndarray] | None = field(default=None, compare=False)

    @property
    def shards(self) -> int:
        return len(self.shard_keys)

    @property
    def target_scale(self) -> tuple[float, float]:
        """Mean and deviation that turn a standardized regression target back into
        the target's own units ((0, 1) for classification)."""
        return self.preprocessor.target.mean, self.preprocessor.target.std

    def to_dict(self) -> dict[str, Any]:
        return {
            "preprocessor": self.preprocessor.to_dict(),
            "network": self.network.to_dict(),
            "shard_keys": list(self.shard_keys),
            "shard_rows": list(self.shard_rows),
            "validation_key": self.validation_key,
            "validation_rows": self.validation_rows,
            "holdout_key": self.holdout_key,
            "holdout_rows": self.holdout_rows,
            "dropped_rows": self.dropped_rows,
            "learner": dict(self.learner),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ShardPlan":
        return cls(
            preprocessor=Preprocessor.from_dict(data["preprocessor"]),
            network=NetworkConfig.from_dict(data["network"]),
            shard_keys=list(data["shard_keys"]),
            shard_rows=[int(rows) for rows in data["shard_rows"]],
            validation_key=data["validation_key"],
            validation_rows=int(data["validation_rows"]),
            holdout_key=data["holdout_key"],
            holdout_rows=int(data["holdout_rows"]),
            dropped_rows=int(data["dropped_rows"]),
            learner=dict(data.get("learner", {})),
        )

"""A job that trains on another job's prepared shards (`jobs.shards_from`): a sweep's
trials share one preparation of the data, so none re-reads or re-writes the dataset.

The shards are a function of the dataset, the target and features, the preprocessing
settings, the validation split, the shard count, the seed and the encoding (dense
for networks, binned for trees): a job may share them only if all of these are its
own, and then it trains exactly as it would on shards it had written itself. What it
may change is what the parts do not hold: the model's shape and its training.
"""

import dataclasses

from app.jobs.capacity import over_limit
from app.jobs.checkpoints import load_checkpoint
from app.jobs.plan import ShardPlan
from app.jobs.sharding import ShardingError
from app.jobs.spec import GradientBoostedTreesSpec, JobSpec
from app.storage import BlobStore
from app.training.networks import NetworkConfig
from app.training.trees.policy import edges_of

# The spec fields the parts are written from.
_SHARED = ("dataset_id", "target", "features", "preprocessing", "validation")


def shared_plan(
    store: BlobStore,
    spec: JobSpec,
    source_id: str,
    source_spec: JobSpec,
    source_plan: dict[str, object],
    max_parameters: int | None,
) -> ShardPlan:
    """The plan of a job on `source_id`'s shards, with its own model's shape."""
    for field in _SHARED:
        if getattr(spec, field) != getattr(source_spec, field):
            raise _differs(source_id, field)
    for field, ours, theirs in (
        ("distribution.shards", spec.distribution.shards, source_spec.distribution.shards),
        ("training.seed", spec.training.seed, source_spec.training.seed),
        ("model.type", spec.is_trees, source_spec.is_trees),
    ):
        if ours != theirs:
            raise _differs(source_id, field)
    plan = ShardPlan.from_dict(dict(source_plan))
    model = spec.model
    if isinstance(model, GradientBoostedTreesSpec):
        assert isinstance(source_spec.model, GradientBoostedTreesSpec)
        if model.max_bins != source_spec.model.max_bins:
            raise _differs(source_id, "model.max_bins")
        first = load_checkpoint(store, source_id, 0)
        if first is None:
            raise ShardingError(
                f"the shards of job {source_id} are gone with its round 0", code="invalid_spec"
            )
        network = NetworkConfig(model.type, plan.network.n_features, plan.network.n_outputs)
        return dataclasses.replace(plan, network=network, edges=edges_of(first))
    network = NetworkConfig(
        type=model.type,
        n_features=plan.network.n_features,
        n_outputs=plan.network.n_outputs,
        hidden_layers=list(model.hidden_layers) if model.type == "mlp" else [],
        activation=model.activation,
        dropout=model.dropout,
    )
    too_big = over_limit(network, max_parameters)
    if too_big is not None:
        raise ShardingError(too_big, code="quota_exceeded")
    return dataclasses.replace(plan, network=network)


def _differs(source_id: str, field: str) -> ShardingError:
    return ShardingError(
        f"{field} differs from job {source_id}'s, whose shards this job trains on",
        code="invalid_spec",
    )

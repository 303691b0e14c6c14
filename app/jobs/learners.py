"""Which round policy trains a job: built from the stored spec, the checked task and the
plan that preparing wrote, the same way by every stage and every worker.

A new learner adds its model types to LEARNERS with a factory; the stages, the tasks,
the dispatcher and the tables stay as they are (docs/architecture.md, "Adding a
learner")."""

from collections.abc import Callable

from app.jobs.plan import ShardPlan
from app.jobs.spec import TREES, GradientBoostedTreesSpec, JobSpec
from app.training.loop import TrainConfig
from app.training.parametric import EarlyStopping, ParametricPolicy
from app.training.protocol import RoundPolicy
from app.training.trees.objectives import objective_for
from app.training.trees.policy import BoostedTreesPolicy
from app.training.trees.splits import SplitRules

PolicyFactory = Callable[[JobSpec, str, ShardPlan], RoundPolicy]


def parametric_policy(spec: JobSpec, task: str, plan: ShardPlan) -> RoundPolicy:
    training, distribution, model = spec.training, spec.distribution, spec.model
    assert not isinstance(model, GradientBoostedTreesSpec)
    early = training.early_stopping
    return ParametricPolicy(
        network=plan.network,
        train=TrainConfig(
            task=task,
            optimizer=training.optimizer,
            learning_rate=training.learning_rate,
            batch_size=training.batch_size,
            local_epochs=training.local_epochs,
            l1=training.l1,
            l2=training.l2,
        ),
        seed=training.seed,
        rounds=training.rounds,
        aggregation=distribution.aggregation,
        trim_fraction=distribution.trim_fraction,
        early_stopping=EarlyStopping(early.patience, early.min_delta) if early else None,
        target_scale=plan.target_scale,
    )


def trees_policy(spec: JobSpec, task: str, plan: ShardPlan) -> RoundPolicy:
    model = spec.model
    assert isinstance(model, GradientBoostedTreesSpec)
    early = spec.training.early_stopping
    return BoostedTreesPolicy(
        objective=objective_for(task, plan.network.n_outputs),
        base_score=tuple(plan.learner["base_score"]),
        n_trees=model.n_trees,
        max_depth=model.max_depth,
        learning_rate=model.learning_rate,
        rules=SplitRules(
            l2=model.l2,
            min_child_weight=model.min_child_weight,
            min_split_gain=model.min_split_gain,
        ),
        colsample=model.colsample,
        subsample=model.subsample,
        seed=spec.training.seed,
        early_stopping=EarlyStopping(early.patience, early.min_delta) if early else None,
        shards=plan.shards,
        # Only a plan fresh from prepare holds the edges; round 0's state carries them on.
        edges=tuple(plan.edges) if plan.edges is not None else None,
    )


LEARNERS: dict[str, PolicyFactory] = {
    "logistic_regression": parametric_policy,
    "linear_regression": parametric_policy,
    "mlp": parametric_policy,
    TREES: trees_policy,
}


def policy_for(spec: JobSpec, task: str, plan: ShardPlan) -> RoundPolicy:
    return LEARNERS[spec.model.type](spec, task, plan)

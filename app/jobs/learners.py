"""Which round policy trains a job: built from the stored spec, the checked task and the
plan that preparing wrote, the same way by every stage and every worker.

A new learner adds its model types to LEARNERS with a factory; the stages, the tasks,
the dispatcher and the tables stay as they are (docs/architecture.md, "Adding a
learner")."""

from collections.abc import Callable

from app.jobs.plan import ShardPlan
from app.jobs.spec import JobSpec
from app.training.loop import TrainConfig
from app.training.parametric import EarlyStopping, ParametricPolicy
from app.training.protocol import RoundPolicy

PolicyFactory = Callable[[JobSpec, str, ShardPlan], RoundPolicy]


def parametric_policy(spec: JobSpec, task: str, plan: ShardPlan) -> RoundPolicy:
    training, distribution = spec.training, spec.distribution
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


LEARNERS: dict[str, PolicyFactory] = {
    "logistic_regression": parametric_policy,
    "linear_regression": parametric_policy,
    "mlp": parametric_policy,
}


def policy_for(spec: JobSpec, task: str, plan: ShardPlan) -> RoundPolicy:
    return LEARNERS[spec.model.type](spec, task, plan)

"""The parametric learner's round policy as pure functions: no SQL, Redis or Celery."""

import math
from typing import get_args

import pytest
import torch

from app.jobs.learners import LEARNERS
from app.jobs.spec import GradientBoostedTreesSpec, ModelSpec
from app.training.loop import TrainConfig
from app.training.networks import NetworkConfig
from app.training.parametric import EarlyStopping, ParametricPolicy
from app.training.protocol import Decision, Evaluation, NoUsableResultsError, Progress, ShardResult

NETWORK = NetworkConfig("logistic_regression", n_features=2, n_outputs=2)


def policy(
    rounds: int = 10, early: EarlyStopping | None = None, **kwargs: object
) -> ParametricPolicy:
    return ParametricPolicy(
        network=NETWORK,
        train=TrainConfig(task="classification"),
        seed=0,
        rounds=rounds,
        early_stopping=early,
        **kwargs,  # type: ignore[arg-type]
    )


def scored(loss: float) -> Evaluation:
    return Evaluation(loss=loss, metrics={})


def result(shard: int, value: float, examples: int, loss: float) -> ShardResult:
    state = {"w": torch.full((2,), value), "b": torch.tensor([value])}
    return ShardResult(shard=shard, state=state, num_examples=examples, loss=loss)


def test_every_model_type_has_a_learner() -> None:
    types = [
        *get_args(ModelSpec.model_fields["type"].annotation),
        *get_args(GradientBoostedTreesSpec.model_fields["type"].annotation),
    ]
    assert sorted(LEARNERS) == sorted(types)


def test_without_validation_the_latest_round_is_kept() -> None:
    decide = policy(rounds=3).decide
    assert decide(1, None, Progress()) == Decision(1, None, finish=False)
    assert decide(3, None, Progress(2, None)) == Decision(3, None, finish=True)


def test_a_lower_loss_is_the_new_best_only_beyond_min_delta() -> None:
    decide = policy(early=EarlyStopping(patience=5, min_delta=0.1)).decide
    assert decide(1, scored(2.0), Progress()) == Decision(1, 2.0, finish=False)
    assert decide(2, scored(1.85), Progress(1, 2.0)) == Decision(2, 1.85, finish=False)
    # 1.8 is lower, but by less than min_delta: round 2 stays the best.
    assert decide(3, scored(1.8), Progress(2, 1.85)) == Decision(2, 1.85, finish=False)


def test_early_stopping_after_patience_rounds_without_improvement() -> None:
    decide = policy(rounds=10, early=EarlyStopping(patience=2)).decide
    assert decide(3, scored(1.5), Progress(2, 1.0)) == Decision(2, 1.0, finish=False)
    assert decide(4, scored(1.5), Progress(2, 1.0)) == Decision(
        2, 1.0, finish=True, early_stopped=True
    )


def test_without_early_stopping_only_the_last_round_finishes() -> None:
    decide = policy(rounds=4).decide
    assert decide(3, scored(9.0), Progress(1, 1.0)) == Decision(1, 1.0, finish=False)
    assert decide(4, scored(9.0), Progress(1, 1.0)) == Decision(1, 1.0, finish=True)


def test_a_nan_loss_never_becomes_the_best() -> None:
    decide = policy(early=EarlyStopping(patience=1)).decide
    decision = decide(2, scored(math.nan), Progress(1, 1.0))
    assert decision == Decision(1, 1.0, finish=True, early_stopped=True)


def test_aggregate_names_shards_and_weights_the_loss_over_merged_ones() -> None:
    diverged = ShardResult(
        shard=2,
        state={"w": torch.tensor([math.nan, 0.0]), "b": torch.zeros(1)},
        num_examples=50,
        loss=9.0,
    )
    results = [result(0, 1.0, 30, 0.5), diverged, result(5, 4.0, 10, 1.5)]
    merged = policy().aggregate(1, None, results)
    assert merged.used == [0, 5] and merged.excluded == [2]
    assert merged.train_loss == pytest.approx((0.5 * 30 + 1.5 * 10) / 40)
    torch.testing.assert_close(merged.state["w"], torch.full((2,), (30 * 1.0 + 10 * 4.0) / 40))


def test_aggregate_with_the_robust_merge_it_was_given() -> None:
    results = [result(s, value, 10, 1.0) for s, value in enumerate([1.0, 2.0, 100.0])]
    merged = policy(aggregation="median").aggregate(1, None, results)
    torch.testing.assert_close(merged.state["b"], torch.tensor([2.0]))


def test_aggregate_refuses_rounds_with_nothing_to_merge() -> None:
    with pytest.raises(NoUsableResultsError):
        policy().aggregate(1, None, [])
    with pytest.raises(NoUsableResultsError):
        policy().aggregate(1, None, [result(0, 1.0, 0, 0.0)])

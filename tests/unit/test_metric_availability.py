"""Scores that cannot be computed are left out with a reason, the gate fails them with
it, and parameter counts match what torch builds."""

import math

import numpy as np
import pytest
from pydantic import ValidationError

from app.jobs.spec import DeployGate
from app.training.metrics import score_classification, score_regression
from app.training.networks import NetworkConfig, build_network


def test_finite_regression_scores_are_all_kept() -> None:
    scores = score_regression([1.0, 2.0, 3.0], [1.5, 2.0, 2.5])
    assert scores.unavailable == {}
    assert scores.values["mae"] == pytest.approx(1 / 3)


def test_huge_targets_overflow_the_errors_and_say_so() -> None:
    scores = score_regression([1e308, -1e308, 2.0], [0.0, 0.0, 2.0])
    assert "rmse" in scores.unavailable and "rmse" not in scores.values
    assert all(math.isfinite(v) for v in scores.values.values())
    assert scores.unavailable["rmse"].startswith("the errors overflow float64")


def test_non_finite_predictions_are_counted_in_the_reason() -> None:
    scores = score_regression([1.0, 2.0, 3.0, 4.0], [1.0, np.nan, np.inf, 4.0])
    assert scores.values == {}
    assert scores.unavailable == dict.fromkeys(
        ("rmse", "mae", "r2"), "the model's predictions are not finite for 2 of 4 rows"
    )


def test_a_nan_probability_makes_every_classification_metric_unavailable() -> None:
    proba = np.array([[0.9, 0.1], [np.nan, np.nan], [0.2, 0.8]])
    scores = score_classification([0, 1, 1], proba)
    assert scores.values == {}
    assert set(scores.unavailable) == {"accuracy", "log_loss", "f1_macro", "roc_auc"}
    assert scores.unavailable["accuracy"].endswith("not finite for 1 of 3 rows")


def test_roc_auc_of_a_single_class_holdout_is_unavailable_with_why() -> None:
    scores = score_classification([1, 1], [[0.3, 0.7], [0.4, 0.6]])
    assert "roc_auc" not in scores.values and scores.values["accuracy"] == 1.0
    assert "only one of the two classes" in scores.unavailable["roc_auc"]


@pytest.mark.parametrize(
    ("gate", "value", "reason"),
    [
        ({"min": 0.9}, 0.95, None),
        ({"min": 0.9}, 0.5, "accuracy 0.5 is below deploy_if.min 0.9"),
        ({"max": 0.9}, 0.95, "accuracy 0.95 is above deploy_if.max 0.9"),
        ({"min": 0.9}, None, "accuracy could not be computed: it was not scored"),
        ({"max": 2.0}, float("nan"), "accuracy could not be computed: it is not finite"),
        # Infinity clears any min, yet it is no score.
        ({"min": 0.0}, float("inf"), "accuracy could not be computed: it is not finite"),
    ],
)
def test_gate_rejection_reasons(gate: dict, value: float | None, reason: str | None) -> None:
    deploy_if = DeployGate(metric="accuracy", **gate)
    assert deploy_if.rejection(value) == reason
    assert deploy_if.passes(value) is (reason is None)


def test_the_gate_passes_on_the_cause_it_is_given() -> None:
    deploy_if = DeployGate(metric="rmse", max=1.0)
    why = "the holdout targets are not finite for 1 of 9 rows"
    assert deploy_if.rejection(None, why) == f"rmse could not be computed: {why}"


def test_a_gate_no_value_could_pass_is_refused() -> None:
    with pytest.raises(ValidationError, match="no value could pass"):
        DeployGate(metric="r2", min=0.8, max=0.2)


@pytest.mark.parametrize(
    "config",
    [
        NetworkConfig("logistic_regression", n_features=7, n_outputs=3),
        NetworkConfig("linear_regression", n_features=12, n_outputs=1, hidden_layers=[64]),
        NetworkConfig("mlp", n_features=5, n_outputs=2, hidden_layers=[16, 8, 4]),
    ],
)
def test_parameter_count_is_what_torch_builds(config: NetworkConfig) -> None:
    built = sum(p.numel() for p in build_network(config).parameters())
    assert config.parameter_count == built

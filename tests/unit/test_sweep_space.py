"""A sweep's space (issue 20, step 1): what each trial's spec is, what a space may
vary, and the values optuna proposes, from the sweep's records alone."""

import math
from typing import Any

import pytest
from pydantic import ValidationError

from app.jobs.spec import GradientBoostedTreesSpec
from app.sweeps.search import TrialRecord, distributions, next_params
from app.sweeps.space import SpaceError, check_sweep, trial_spec
from app.sweeps.spec import SweepSpec

EXAMPLE: dict[str, Any] = SweepSpec.model_config["json_schema_extra"]["example"]  # type: ignore[assignment,index]
TEMPLATE = EXAMPLE["template"]


def _sweep(**change: Any) -> SweepSpec:
    return SweepSpec.model_validate({**EXAMPLE, **change})


def test_the_contracts_example_is_a_valid_sweep() -> None:
    sweep = _sweep()
    check_sweep(sweep)
    assert sweep.maximize and sweep.parallelism == 2
    assert _sweep(metric="rmse", direction=None).maximize is False


def test_a_trial_is_the_template_with_its_values_set() -> None:
    spec = trial_spec(
        {**TEMPLATE, "model_name": "churn", "deploy_if": {"metric": "accuracy", "min": 0.9}},
        {"training.learning_rate": 0.3, "model.hidden_layers": [64, 64], "training.rounds": 15},
    )
    assert spec.training.learning_rate == 0.3 and spec.training.rounds == 15
    assert spec.model.type == "mlp" and list(spec.model.hidden_layers) == [64, 64]
    # The gate and the name belong to the sweep's best trial, not to every trial.
    assert spec.model_name is None and spec.deploy_if is None
    assert spec.distribution.shards == 2 and spec.dataset_id == TEMPLATE["dataset_id"]


def test_whole_model_blocks_leave_out_what_the_drawn_model_does_not_use() -> None:
    space = {
        "model": {"choice": [{"type": "logistic_regression"}, {"type": "mlp"},
                             {"type": "gradient_boosted_trees", "n_trees": 20}]},
        "model.hidden_layers": {"choice": [[8], [32]]},
        "model.max_depth": {"int": [2, 6]},
        "training.learning_rate": {"log_uniform": [1e-3, 0.5]},
    }  # fmt: skip
    check_sweep(_sweep(space=space))
    params = {"model.hidden_layers": [8], "model.max_depth": 3, "training.learning_rate": 0.1}
    trees = trial_spec(TEMPLATE, {"model": space["model"]["choice"][2], **params})
    assert isinstance(trees.model, GradientBoostedTreesSpec) and trees.model.max_depth == 3
    assert "learning_rate" not in trees.training.model_fields_set
    mlp = trial_spec(TEMPLATE, {"model": {"type": "mlp"}, **params})
    assert list(mlp.model.hidden_layers) == [8] and mlp.training.learning_rate == 0.1


@pytest.mark.parametrize(
    ("key", "dimension", "words"),
    [
        ("training.seed", {"int": [0, 9]}, "decides the data every trial shares"),
        ("distribution.shards", {"int": [2, 8]}, "decides the data every trial shares"),
        ("preprocessing.standardize", {"choice": [True, False]}, "set it in the template"),
        ("target", {"choice": ["a", "b"]}, "set it in the template"),
        ("training.nope", {"uniform": [0, 1]}, "training has no field 'nope'"),
        ("model.max_depth", {"int": [2, 6]}, "no model this sweep trains has a field"),
        ("training.l2.x", {"uniform": [0, 1]}, "one field"),
        ("training.learning_rate", {"log_uniform": [1e-4, 100.0]}, "100.0 makes an invalid spec"),
        ("model", {"choice": [{"type": "mlp"}, {"type": "svm"}]}, "makes an invalid spec"),
        ("model", {"choice": ["mlp", "trees"]}, "drawn whole"),
    ],
)
def test_a_space_that_cannot_run_is_refused_naming_its_dimension(
    key: str, dimension: dict[str, Any], words: str
) -> None:
    with pytest.raises(SpaceError) as refused:
        check_sweep(_sweep(space={key: dimension}))
    assert refused.value.param == f"space.{key}"
    assert words in refused.value.message


def test_a_template_that_is_no_job_spec_is_named() -> None:
    with pytest.raises(SpaceError) as refused:
        check_sweep(_sweep(template={**TEMPLATE, "training": {"rounds": 0}}))
    assert refused.value.param == "template.training.rounds"


@pytest.mark.parametrize(
    "dimension",
    [{"log_uniform": [0, 1]}, {"uniform": [1, 1]}, {"int": [1, 10], "step": 4},
     {"choice": [1]}, {"between": [1, 2]}],
)  # fmt: skip
def test_malformed_dimensions_are_refused(dimension: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        _sweep(space={"training.l2": dimension})


def _objective(params: dict[str, Any]) -> float:
    """Best at learning rate 0.01 and the widest layer."""
    width = {(16,): 0.0, (64,): 0.05, (64, 64): 0.08}[tuple(params["model.hidden_layers"])]
    return 1 - abs(math.log10(params["training.learning_rate"]) + 2) / 4 + width


def _run(sweep: SweepSpec, trials: int) -> list[TrialRecord]:
    records: list[TrialRecord] = []
    for number in range(trials):
        params = next_params(sweep, records)
        records.append(TrialRecord(number, params, "done", _objective(params)))
    return records


def test_the_same_records_propose_the_same_next_trial_and_choices_come_back_as_drawn() -> None:
    sweep = _sweep(max_trials=30)
    records = _run(sweep, 6)
    assert next_params(sweep, records) == next_params(sweep, records)
    assert _run(sweep, 6) == records
    assert _run(_sweep(max_trials=30, seed=1), 6) != records
    layers = {tuple(r.params["model.hidden_layers"]) for r in _run(sweep, 12)}
    assert layers <= {(16,), (64,), (64, 64)} and len(layers) > 1
    assert all(5 <= r.params["training.rounds"] <= 50 and r.params["training.rounds"] % 5 == 0
               for r in records)  # fmt: skip
    assert set(distributions(sweep)) == set(sweep.space)


def test_tpe_concentrates_where_the_scores_are_and_random_search_does_not() -> None:
    tpe = _run(_sweep(max_trials=30), 30)
    late = [r.score or 0 for r in tpe[20:]]
    early = [r.score or 0 for r in tpe[:10]]
    assert sum(late) / 10 > sum(early) / 10, (early, late)
    random = _run(_sweep(max_trials=30, sampler="random"), 30)
    assert sum(r.score or 0 for r in random[20:]) / 10 < sum(late) / 10


def test_running_and_pruned_trials_count_for_the_next_proposal() -> None:
    sweep = _sweep(max_trials=30)
    records = _run(sweep, 8)
    running = [*records, TrialRecord(8, next_params(sweep, records), "running")]
    pruned = [*records, TrialRecord(8, running[-1].params, "pruned", None, (0.5, 0.4))]
    proposals = {str(next_params(sweep, r)) for r in (records, running, pruned)}
    assert len(proposals) >= 2

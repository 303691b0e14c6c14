"""The SDK's spec refuses what the server refuses, before any request: no string or
boolean becomes a number, and no gate that no value could pass."""

import pytest
from pydantic import ValidationError

from shardtrain import DeployGate, JobSpec
from shardtrain.spec import field_path


@pytest.mark.parametrize(
    ("fields", "where"),
    [
        ({"distribution": {"shards": "4"}}, "distribution.shards"),
        ({"training": {"learning_rate": True}}, "training.learning_rate"),
        ({"training": {"learning_rate": "0.1"}}, "training.learning_rate"),
        ({"model": {"type": "mlp", "hidden_layers": [True]}}, "model.hidden_layers.0"),
    ],
)
def test_a_wrong_json_type_is_refused_naming_the_field(fields: dict, where: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate({"dataset_id": "ds_1", "target": "y", **fields})
    assert field_path(caught.value.errors()[0]["loc"]) == where


def test_an_integer_still_fills_a_float_and_is_sent_as_given() -> None:
    spec = JobSpec.model_validate(
        {"dataset_id": "ds_1", "target": "y", "training": {"learning_rate": 1}}
    )
    assert spec.to_request()["training"] == {"learning_rate": 1.0}


def test_a_gate_with_min_above_max_is_refused() -> None:
    with pytest.raises(ValidationError, match="no value could pass"):
        DeployGate(metric="accuracy", min=0.9, max=0.1)

"""Every job-spec field: out-of-range values are 422s naming the field."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV, iris_table, table_to_csv

MakeDataset = Callable[[str, bytes], str]


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"task": "ranking"}, "task"),
        ({"model": {"type": "mlp", "activation": "swish"}}, "model.activation"),
        ({"model": {"type": "mlp", "hidden_layers": [0]}}, "model.hidden_layers.0"),
        ({"model": {"type": "mlp", "dropout": 1.0}}, "model.dropout"),
        ({"preprocessing": {"impute": "zero"}}, "preprocessing.impute"),
        ({"preprocessing": {"categorical": "ordinal"}}, "preprocessing.categorical"),
        ({"training": {"optimizer": "lbfgs"}}, "training.optimizer"),
        ({"training": {"batch_size": 0}}, "training.batch_size"),
        ({"training": {"local_epochs": 0}}, "training.local_epochs"),
        ({"training": {"rounds": 0}}, "training.rounds"),
        ({"training": {"rounds": 1001}}, "training.rounds"),
        ({"training": {"l1": -0.1}}, "training.l1"),
        ({"training": {"l2": -1}}, "training.l2"),
        ({"training": {"seed": -1}}, "training.seed"),
        ({"training": {"early_stopping": {"patience": 0}}}, "training.early_stopping.patience"),
        ({"training": {"early_stopping": {"min_delta": -1}}}, "training.early_stopping.min_delta"),
        ({"distribution": {"aggregation": "krum"}}, "distribution.aggregation"),
        ({"distribution": {"trim_fraction": 0.5}}, "distribution.trim_fraction"),
        ({"distribution": {"device": "tpu"}}, "distribution.device"),
        ({"distribution": {"shards": 257}}, "distribution.shards"),
        ({"validation": {"holdout_fraction": 0.85}}, "validation.holdout_fraction"),
        ({"validation": {"holdout_fraction": 0.5, "validation_fraction": 0.5}}, "validation"),
        ({"deploy_if": {"metric": "auc", "min": 0.5}}, "deploy_if.metric"),
        ({"features": []}, "features"),
    ],
)
def test_out_of_range_field_is_422_naming_it(
    client: TestClient, ready_dataset: MakeDataset, patch: dict, param: str
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "label", **patch})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    "patch",
    [
        {"model": {"type": "mlp", "hidden_layers": [8, 4], "activation": "gelu", "dropout": 0.1}},
        {"training": {"optimizer": "momentum", "l1": 0.01, "l2": 0.01, "early_stopping": None}},
        {"distribution": {"shards": 3, "aggregation": "trimmed_mean", "trim_fraction": 0.2}},
        {"preprocessing": {"standardize": False, "impute": "most_frequent"}},
        {"features": ["petal_width"]},
    ],
)
def test_in_range_fields_are_echoed_back(
    client: TestClient, ready_dataset: MakeDataset, patch: dict
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    body = {"dataset_id": dataset_id, "target": "species", **patch}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    spec = response.json()["spec"]
    for section, values in patch.items():
        if isinstance(values, dict):
            assert {k: spec[section][k] for k in values} == values
        else:
            assert spec[section] == values


def test_more_shards_than_training_rows_is_422(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 3}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "distribution.shards"
    assert "leaves 2" in error["message"]

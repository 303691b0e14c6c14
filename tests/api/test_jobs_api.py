from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV, iris_table, table_to_csv

from app.fleet import WorkerRegistry

MakeDataset = Callable[[str, bytes], str]


def test_create_job_fills_defaults(client: TestClient, ready_dataset: MakeDataset) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "species"})
    assert response.status_code == 201, response.text
    job = response.json()
    assert job["object"] == "job"
    assert job["id"].startswith("job_")
    assert job["status"] == "queued"
    assert job["task"] == "classification"
    assert job["progress"] == {"round": 0, "rounds": 10}
    spec = job["spec"]
    assert spec["model"]["type"] == "logistic_regression"
    assert spec["training"]["optimizer"] == "adam"
    assert spec["distribution"] == {
        "shards": 4,
        "aggregation": "fedavg",
        "trim_fraction": 0.1,
        "device": "auto",
    }
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    listed = client.get("/v1/jobs").json()
    assert [j["id"] for j in listed["data"]] == [job["id"]]


def test_target_that_is_not_a_column_is_422_naming_target(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "nope"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == "target"
    assert "'nope'" in error["message"]
    assert client.get("/v1/jobs").json()["data"] == []


def test_unknown_feature_is_named(client: TestClient, ready_dataset: MakeDataset) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {"dataset_id": dataset_id, "target": "label", "features": ["x1", "zz"]}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "features.1"


def test_unknown_dataset_is_404_naming_dataset_id(client: TestClient) -> None:
    response = client.post("/v1/jobs", json={"dataset_id": "ds_missing", "target": "y"})
    assert response.status_code == 404
    assert response.json()["error"]["param"] == "dataset_id"


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"training": {"learning_rate": -1}}, "training.learning_rate"),
        ({"training": {"rounds": 0}}, "training.rounds"),
        ({"distribution": {"shards": 0}}, "distribution.shards"),
        ({"model": {"type": "xgboost"}}, "model.type"),
        ({"training": {"optimiser": "adam"}}, "training.optimiser"),
        ({"deploy_if": {"metric": "accuracy"}}, "deploy_if"),
    ],
)
def test_invalid_spec_fields_are_named(
    client: TestClient, ready_dataset: MakeDataset, patch: dict, param: str
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "label", **patch})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param


def test_metric_that_does_not_fit_the_task_is_named(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {
        "dataset_id": dataset_id,
        "target": "label",
        "deploy_if": {"metric": "rmse", "max": 1.0},
    }
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "deploy_if.metric"


def test_regression_model_on_text_target_is_rejected(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    body = {"dataset_id": dataset_id, "target": "species", "model": {"type": "linear_regression"}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "target"


def test_job_on_a_processing_dataset_is_queued_for_later_checks(client: TestClient) -> None:
    dataset_id = client.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)}).json()[
        "id"
    ]
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "label"})
    assert response.status_code == 201
    assert response.json()["task"] is None


def test_malformed_json_is_a_4xx_error_object(client: TestClient) -> None:
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_json"
    assert error["param"] is None


def test_unknown_job_and_metrics_are_404(client: TestClient) -> None:
    assert client.get("/v1/jobs/job_nope").status_code == 404
    assert client.get("/v1/jobs/job_nope/metrics").json()["error"]["code"] == "not_found"


def test_gate_without_holdout_rows_is_rejected(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {
        "dataset_id": dataset_id,
        "target": "label",
        "validation": {"holdout_fraction": 0.0},
        "deploy_if": {"metric": "accuracy", "min": 0.5},
    }
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "validation.holdout_fraction"


def test_cuda_without_a_gpu_worker_is_422(
    client: TestClient, ready_dataset: MakeDataset, redis_client: redis.Redis
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {
        "dataset_id": dataset_id,
        "target": "label",
        "distribution": {"shards": 1, "device": "cuda"},
    }
    registry = WorkerRegistry(redis_client)
    registry.announce("cpu-host", cuda_devices=0)
    try:
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == 422
        error = response.json()["error"]
        assert (error["code"], error["param"]) == ("no_gpu_worker", "distribution.device")
        # The moment a GPU worker announces itself, the same spec is accepted.
        registry.announce("gpu-host", cuda_devices=1)
        assert client.post("/v1/jobs", json=body).status_code == 201
    finally:
        registry.withdraw("cpu-host")
        registry.withdraw("gpu-host")

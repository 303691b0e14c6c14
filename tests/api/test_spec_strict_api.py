"""The job spec takes JSON types as they are: no string or boolean is coerced into a
number, a gate no value could pass is refused, and a model too big for the tenant's
`max_parameters` is refused at the API (hidden layers) or at prepare (the full count)."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV, iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_factory, session_scope
from app.jobs.stages import prepare
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tenancy.scope import SYSTEM
from app.tenancy.service import set_limit

MakeDataset = Callable[[str, bytes], str]


def limit(settings: Settings, name: str, value: int) -> None:
    with session_scope(session_factory(settings.database_url)) as session:
        set_limit(session, "tests", name, value)


@pytest.mark.parametrize(
    ("patch", "param"),
    [
        ({"distribution": {"shards": "4"}}, "distribution.shards"),
        ({"distribution": {"shards": True}}, "distribution.shards"),
        ({"distribution": {"shards": 2.0}}, "distribution.shards"),
        ({"training": {"learning_rate": "0.1"}}, "training.learning_rate"),
        ({"training": {"learning_rate": True}}, "training.learning_rate"),
        ({"training": {"l2": False}}, "training.l2"),
        ({"training": {"seed": "7"}}, "training.seed"),
        ({"training": {"early_stopping": {"patience": True}}}, "training.early_stopping.patience"),
        ({"model": {"type": "mlp", "hidden_layers": ["8"]}}, "model.hidden_layers.0"),
        ({"model": {"type": "mlp", "hidden_layers": [True]}}, "model.hidden_layers.0"),
        ({"model": {"type": "mlp", "dropout": "0.1"}}, "model.dropout"),
        ({"preprocessing": {"standardize": 1}}, "preprocessing.standardize"),
        ({"preprocessing": {"standardize": "true"}}, "preprocessing.standardize"),
        ({"validation": {"holdout_fraction": "0.2"}}, "validation.holdout_fraction"),
        ({"deploy_if": {"metric": "accuracy", "min": "0.5"}}, "deploy_if.min"),
        ({"deploy_if": {"metric": "accuracy", "min": True}}, "deploy_if.min"),
        ({"target": 5}, "target"),
        ({"features": [1]}, "features.0"),
    ],
)
def test_a_value_of_the_wrong_json_type_is_422_naming_the_field(
    client: TestClient, ready_dataset: MakeDataset, patch: dict, param: str
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    response = client.post("/v1/jobs", json={**body, **patch})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == param, error
    assert error["type"] == "invalid_request_error"
    assert error["message"].startswith(param)
    assert client.get("/v1/jobs").json()["data"] == []


def test_an_integer_fills_a_float_field(client: TestClient, ready_dataset: MakeDataset) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    body = {
        "dataset_id": dataset_id,
        "target": "species",
        "training": {"learning_rate": 1, "l2": 0},
        "deploy_if": {"metric": "accuracy", "min": 0, "max": 1},
    }
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    spec = response.json()["spec"]
    assert spec["training"]["learning_rate"] == 1.0
    assert spec["deploy_if"] == {"metric": "accuracy", "min": 0.0, "max": 1.0}


def test_a_gate_with_min_above_max_is_422(client: TestClient, ready_dataset: MakeDataset) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    body = {
        "dataset_id": dataset_id,
        "target": "species",
        "deploy_if": {"metric": "accuracy", "min": 0.9, "max": 0.5},
    }
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "deploy_if"
    assert "min (0.9) is above deploy_if.max (0.5)" in error["message"]
    body["deploy_if"] = {"metric": "accuracy", "min": 0.9, "max": 0.9}
    assert client.post("/v1/jobs", json=body).status_code == 201


def test_a_job_stored_with_min_above_max_before_the_check_still_reads(
    client: TestClient, ready_dataset: MakeDataset, sessions: sessionmaker[Session]
) -> None:
    from app.jobs.repository import JobRepository

    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    gate = {"metric": "accuracy", "min": 0.5, "max": 0.9}
    body = {"dataset_id": dataset_id, "target": "species", "deploy_if": gate}
    job_id = client.post("/v1/jobs", json=body).json()["id"]
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None
        # As an API that did not check yet would have stored it.
        job.spec = {**job.spec, "deploy_if": {**gate, "min": 0.95}}
    read = client.get(f"/v1/jobs/{job_id}")
    assert read.status_code == 200, read.text
    assert read.json()["spec"]["deploy_if"]["min"] == 0.95
    assert client.get("/v1/jobs").status_code == 200


def test_sixteen_layers_of_4096_exceed_the_default_parameter_limit(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    model = {"type": "mlp", "hidden_layers": [4096] * 16}
    response = client.post(
        "/v1/jobs", json={"dataset_id": dataset_id, "target": "species", "model": model}
    )
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "model.hidden_layers"
    assert error["code"] == "quota_exceeded"
    # 15 hidden-to-hidden layers of 4096 x 4096 weights and 4096 biases, plus the
    # smallest input and output layers: 15 * 4097 * 4096 + 2 * 4096 + 4097.
    assert "251,731,969 parameters" in error["message"]
    assert "max_parameters of 50,000,000" in error["message"]


def test_the_tenants_own_parameter_limit_applies(
    client: TestClient, settings: Settings, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    limit(settings, "max_parameters", 1000)
    body = {"dataset_id": dataset_id, "target": "species"}
    # At least (1+1)*32 + (32+1)*32 + (32+1)*1 = 1153 parameters, whatever the dataset.
    too_big = {**body, "model": {"type": "mlp", "hidden_layers": [32, 32]}}
    response = client.post("/v1/jobs", json=too_big)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["param"] == "model.hidden_layers"
    assert "1,153 parameters" in error["message"] and "max_parameters of 1,000" in error["message"]
    fits = {**body, "model": {"type": "mlp", "hidden_layers": [16, 16]}}
    assert client.post("/v1/jobs", json=fits).status_code == 201


def test_prepare_fails_a_job_whose_full_model_passes_the_limit(
    client: TestClient,
    settings: Settings,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    # Iris: 4 features, 3 classes. An mlp of [8] has (4+1)*8 + (8+1)*3 = 67 parameters,
    # but the API only knows its hidden layers: at least (1+1)*8 + (8+1)*1 = 25.
    limit(settings, "max_parameters", 50)
    body = {
        "dataset_id": dataset_id,
        "target": "species",
        "model": {"type": "mlp", "hidden_layers": [8]},
    }
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    with session_scope(sessions) as session:
        assert prepare.begin_prepare(session, job_id) == "build"
    with session_scope(sessions) as session:
        assert prepare.build_job_shards(session, store, params, job_id).next == "none"
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "quota_exceeded"
    message = job["error"]["message"]
    assert message.startswith("model.hidden_layers: the mlp has 67 parameters"), message
    assert "4 input features" in message and "max_parameters of 50" in message
    # Nothing was written for a job that cannot train.
    assert not (settings.blob_dir / "jobs" / job_id).exists()

"""Warm starts: `init_from` trains on from a model's parameters through its own fitted
preprocessing; a job that differs from the model in what the parameters mean is a 422
naming the difference."""

from collections.abc import Callable
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from sample_data import breast_cancer_table, iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.jobs.checkpoints import load_checkpoint
from app.registry.artifact import read_artifact
from app.storage import BlobStore
from app.tables import Job

TABLE = breast_cancer_table()
FULL = table_to_csv(TABLE)
SPEC: dict[str, Any] = {
    "target": "diagnosis",
    "distribution": {"shards": 2},
    "training": {"rounds": 6, "learning_rate": 0.1, "seed": 3},
}
ONE_ROUND = {"rounds": 1, "learning_rate": 0.01, "local_epochs": 1, "seed": 3}


def _succeeded(job: dict[str, Any]) -> dict[str, Any]:
    assert job["status"] == "succeeded", job
    return job


def _state(store: BlobStore, client: TestClient, model_id: str) -> dict[str, torch.Tensor]:
    key = f"models/{model_id}/model.safetensors"
    assert client.get(f"/v1/models/{model_id}").status_code == 200
    return read_artifact(store.path(key)).state


def test_a_warm_start_begins_at_the_models_parameters_and_preprocessing(
    client: TestClient,
    train_job: Callable[..., dict[str, Any]],
    sessions: sessionmaker[Session],
    store: BlobStore,
) -> None:
    base = _succeeded(train_job("cancer.csv", FULL, **SPEC, model_name="cancer"))
    # More rows, fitted alone, would standardize with other means: the warm start keeps
    # the model's own.
    more = table_to_csv(TABLE.slice(100))
    warm = _succeeded(
        train_job(
            "cancer.csv", more, **{**SPEC, "training": ONE_ROUND},
            init_from={"model": "cancer@1"},
        )
    )  # fmt: skip
    assert warm["init_model_id"] == base["model_id"]
    events = client.get(f"/v1/jobs/{warm['id']}/events?limit=100").json()["data"]
    assert any(e["type"] == "job.warm_start" for e in events)

    start = load_checkpoint(store, warm["id"], 0)
    assert start is not None
    init = _state(store, client, base["model_id"])
    assert start.keys() == init.keys()
    assert all(torch.equal(start[k], init[k]) for k in init)
    with sessions() as session:
        plans = {
            j.id: j.plan for j in session.query(Job).filter(Job.id.in_([base["id"], warm["id"]]))
        }
    assert plans[warm["id"]]["preprocessor"] == plans[base["id"]]["preprocessor"]


def test_a_warm_start_is_ahead_of_a_cold_start_after_one_round(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    base = _succeeded(train_job("cancer.csv", FULL, **SPEC))
    cold = _succeeded(train_job("cancer.csv", FULL, **{**SPEC, "training": ONE_ROUND}))
    warm = _succeeded(
        train_job("cancer.csv", FULL, **{**SPEC, "training": ONE_ROUND},
                  init_from={"model": base["model_id"]})
    )  # fmt: skip
    accuracy = {
        name: client.get(f"/v1/models/{job['model_id']}").json()["metrics"]["accuracy"]
        for name, job in (("base", base), ("cold", cold), ("warm", warm))
    }
    assert accuracy["warm"] > accuracy["cold"], accuracy
    assert accuracy["warm"] >= accuracy["base"] - 0.02, accuracy


def test_the_same_warm_start_gives_the_same_model(
    client: TestClient, train_job: Callable[..., dict[str, Any]], store: BlobStore
) -> None:
    base = _succeeded(train_job("cancer.csv", FULL, **SPEC))
    spec = {
        **SPEC,
        "training": {**ONE_ROUND, "rounds": 2},
        "init_from": {"model": base["model_id"]},
    }
    shards_2 = _succeeded(train_job("cancer.csv", FULL, **spec))
    again = _succeeded(train_job("cancer.csv", FULL, **spec))
    first, second = (_state(store, client, j["model_id"]) for j in (shards_2, again))
    assert all(torch.equal(first[k], second[k]) for k in first)


@pytest.mark.parametrize(
    ("change", "param", "words"),
    [
        ({"features": [c for c in TABLE.column_names[1:] if c != "diagnosis"]}, "features",
         "reads column 'mean_radius', which this job does not"),
        ({"preprocessing": {"standardize": False}}, "preprocessing.standardize",
         "trained with preprocessing.standardize True"),
        ({"model": {"type": "mlp", "hidden_layers": [8]}}, "model.type",
         "is a logistic_regression; this job trains a mlp"),
        ({"task": "regression", "model": {"type": "linear_regression"}, "target": "mean_radius"},
         "task", "is a classification model; this job is regression"),
    ],
)  # fmt: skip
def test_a_job_that_differs_from_its_init_model_is_422_naming_the_difference(
    client: TestClient,
    train_job: Callable[..., dict[str, Any]],
    ready_dataset: Callable[[str, bytes], str],
    change: dict[str, Any],
    param: str,
    words: str,
) -> None:
    base = _succeeded(train_job("cancer.csv", FULL, **SPEC))
    dataset_id = ready_dataset("cancer.csv", FULL)
    body = {**SPEC, **change, "dataset_id": dataset_id, "init_from": {"model": base["model_id"]}}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == param
    assert words in response.json()["error"]["message"]


def test_a_differently_shaped_network_is_named(
    client: TestClient,
    train_job: Callable[..., dict[str, Any]],
    ready_dataset: Callable[[str, bytes], str],
) -> None:
    mlp = {**SPEC, "model": {"type": "mlp", "hidden_layers": [8]}}
    base = _succeeded(train_job("cancer.csv", FULL, **mlp))
    dataset_id = ready_dataset("cancer.csv", FULL)
    wider = {**mlp, "model": {"type": "mlp", "hidden_layers": [16]}, "dataset_id": dataset_id}
    response = client.post("/v1/jobs", json={**wider, "init_from": {"model": base["model_id"]}})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["param"] == "model.hidden_layers"
    dropout = {**mlp, "model": {"type": "mlp", "hidden_layers": [8], "dropout": 0.2}}
    response = client.post(
        "/v1/jobs",
        json={**dropout, "dataset_id": dataset_id, "init_from": {"model": base["model_id"]}},
    )
    assert (response.status_code, response.json()["error"]["param"]) == (422, "model.dropout")
    # The optimizer's settings are not the parameters' meaning: they may differ.
    faster = {**mlp, "training": {**ONE_ROUND, "learning_rate": 0.5, "l2": 0.01}}
    warm = train_job("cancer.csv", FULL, **faster, init_from={"model": base["model_id"]})
    assert warm["status"] == "succeeded", warm


def test_unknown_models_and_bad_references_are_named(
    client: TestClient,
    train_job: Callable[..., dict[str, Any]],
    ready_dataset: Callable[[str, bytes], str],
) -> None:
    _succeeded(train_job("cancer.csv", FULL, **SPEC, model_name="cancer"))
    dataset_id = ready_dataset("cancer.csv", FULL)
    for reference, status in (
        ("mdl_0123456789abcdef01234567", 404),
        ("cancer@champion", 404),
        ("cancer@7", 404),
        ("nobody@1", 404),
        ("cancer", 422),
        ("mdl_../x", 422),
    ):
        body = {**SPEC, "dataset_id": dataset_id, "init_from": {"model": reference}}
        response = client.post("/v1/jobs", json=body)
        assert response.status_code == status, (reference, response.text)
        assert response.json()["error"]["param"] == "init_from.model", reference
    trees = {"target": "diagnosis", "model": {"type": "gradient_boosted_trees", "n_trees": 3}}
    refused = client.post(
        "/v1/jobs", json={**trees, "dataset_id": dataset_id, "init_from": {"model": "cancer@1"}}
    )
    assert (refused.status_code, refused.json()["error"]["param"]) == (422, "model.type")


def test_a_class_the_init_model_never_saw_fails_the_job_naming_it(
    client: TestClient, train_job: Callable[..., dict[str, Any]]
) -> None:
    iris = iris_table()
    two = iris.filter(iris.column("species").to_numpy(zero_copy_only=False) != "virginica")
    spec = {**SPEC, "target": "species"}
    base = _succeeded(train_job("iris.csv", table_to_csv(two), **spec))
    warm = train_job("iris.csv", table_to_csv(iris), **spec, init_from={"model": base["model_id"]})
    assert warm["status"] == "failed", warm
    assert warm["error"]["code"] == "invalid_spec"
    assert "'virginica'" in warm["error"]["message"]


TREES = {
    "target": "diagnosis",
    "distribution": {"shards": 2},
    "model": {"type": "gradient_boosted_trees", "n_trees": 4, "max_depth": 3},
    "training": {"seed": 5},
}


def test_boosting_goes_on_from_the_models_trees(
    client: TestClient,
    train_job: Callable[..., dict[str, Any]],
    ready_dataset: Callable[[str, bytes], str],
    store: BlobStore,
) -> None:
    base = _succeeded(train_job("cancer.csv", FULL, **TREES))
    more = {**TREES, "model": {**TREES["model"], "n_trees": 3, "learning_rate": 0.05}}
    warm = _succeeded(train_job("cancer.csv", FULL, **more, init_from={"model": base["model_id"]}))
    before, after = (_state(store, client, j["model_id"]) for j in (base, warm))
    kept = before["feature"].shape[0]
    assert (kept, after["feature"].shape[0]) == (4, 7)
    for name, tensor in before.items():
        if name == "base_score":
            assert torch.equal(after[name], tensor)
        else:
            assert torch.equal(after[name][:kept], tensor), name
    accuracy = [
        client.get(f"/v1/models/{j['model_id']}").json()["metrics"]["accuracy"]
        for j in (base, warm)
    ]
    assert accuracy[1] >= accuracy[0] - 0.02, accuracy

    dataset_id = ready_dataset("cancer.csv", FULL)
    deeper = {**TREES, "model": {**TREES["model"], "max_depth": 4}, "dataset_id": dataset_id}
    response = client.post("/v1/jobs", json={**deeper, "init_from": {"model": base["model_id"]}})
    assert (response.status_code, response.json()["error"]["param"]) == (422, "model.max_depth")

"""Spec options through the real stages: models, optimizers, merges, preprocessing,
early stopping, and results that do not depend on the order shards finish in."""

from collections.abc import Callable

import pytest
import torch
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv

from app.db import session_scope
from app.jobs.checkpoints import load_checkpoint
from app.jobs.repository import JobRepository
from app.jobs.stages import merge, prepare
from app.jobs.stages.train import train_shard
from app.storage import BlobStore
from app.tenancy.scope import SYSTEM

MakeDataset = Callable[[str, bytes], str]
IRIS_ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
]
TRAINING = {"rounds": 20, "local_epochs": 5, "batch_size": 16, "learning_rate": 0.05}


@pytest.fixture
def train(train_job: Callable[..., dict]) -> Callable[..., dict]:
    return lambda data, **spec: train_job("data.csv", data, **spec)


@pytest.mark.parametrize(
    "options",
    [
        {"model": {"type": "mlp", "hidden_layers": [16], "activation": "tanh"}},
        {"model": {"type": "mlp", "hidden_layers": [16, 8], "activation": "gelu", "dropout": 0.1}},
        {"training": {**TRAINING, "optimizer": "sgd", "learning_rate": 0.2}},
        {"training": {**TRAINING, "optimizer": "momentum", "learning_rate": 0.05}},
        {"distribution": {"shards": 4, "aggregation": "mean"}},
        {"distribution": {"shards": 5, "aggregation": "median"}},
        {"distribution": {"shards": 5, "aggregation": "trimmed_mean", "trim_fraction": 0.2}},
        {"training": {**TRAINING, "l1": 0.001, "l2": 0.001}},
    ],
)
def test_each_option_trains_a_usable_iris_model(client: TestClient, train, options: dict) -> None:  # type: ignore[no-untyped-def]
    spec = {"target": "species", "training": TRAINING, **options}
    job = train(table_to_csv(iris_table()), **spec)
    assert job["status"] == "succeeded", job
    assert job["metrics"]["accuracy"] >= 0.85, job["metrics"]
    url = f"/v1/models/{job['model_id']}/predict"
    body = client.post(url, json={"inputs": IRIS_ROWS}).json()
    assert body["predictions"] == ["setosa", "virginica"]


MIXED_CSV = b"size,color,weight,label\n" + b"".join(
    f"{s},{c},{w},{label}\n".encode()
    for i in range(60)
    for s, c, w, label in [
        (
            "" if i % 7 == 0 else 1 + (i % 5),
            ["red", "blue", ""][i % 3],
            "" if i % 11 == 0 else 10 + i % 3,
            "big" if i % 5 >= 2 else "small",
        )
    ]
)


@pytest.mark.parametrize("impute", ["mean", "median", "most_frequent"])
def test_missing_values_and_categories_are_handled(client: TestClient, train, impute: str) -> None:  # type: ignore[no-untyped-def]
    job = train(
        MIXED_CSV,
        target="label",
        preprocessing={"impute": impute},
        training=TRAINING,
        distribution={"shards": 2},
    )
    assert job["status"] == "succeeded", job
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["features"] == [
        {"name": "size", "dtype": "int"},
        {"name": "color", "dtype": "string"},
        {"name": "weight", "dtype": "int"},
    ]
    assert model["classes"] == ["big", "small"]
    url = f"/v1/models/{job['model_id']}/predict"
    rows = [
        {"size": 4, "color": "green", "weight": 11},  # a color never seen in training
        {"size": None, "color": None, "weight": None},  # all imputed
        {"size": 1, "color": "red", "weight": 10},
    ]
    response = client.post(url, json={"inputs": rows})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"][0] == "big"
    assert response.json()["predictions"][2] == "small"


def test_early_stopping_keeps_the_best_round(  # type: ignore[no-untyped-def]
    client: TestClient, train, sessions
) -> None:
    job = train(
        table_to_csv(iris_table()),
        target="species",
        training={
            **TRAINING,
            "rounds": 50,
            # No later round can beat round 1 by this much: training stops after `patience`.
            "early_stopping": {"patience": 2, "min_delta": 100.0},
        },
    )
    assert job["status"] == "succeeded"
    assert job["progress"]["round"] == 3
    assert job["metrics"]["round"] == 1
    with session_scope(sessions) as session:
        stored = JobRepository(session, SYSTEM).get(job["id"])
        assert stored is not None and stored.best_round == 1


def test_merged_parameters_do_not_depend_on_shard_finish_order(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store: BlobStore, params
) -> None:
    dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
    merged = []
    for order in ([0, 1, 2, 3], [3, 1, 0, 2]):
        body = {"dataset_id": dataset_id, "target": "species", "training": {"rounds": 1}}
        job_id = client.post("/v1/jobs", json=body).json()["id"]
        with session_scope(sessions) as session:
            prepare.begin_prepare(session, job_id)
        with session_scope(sessions) as session:
            prepare.build_job_shards(session, store, params, job_id)
        for shard in order:
            with session_scope(sessions) as session:
                train_shard(session, store, params, job_id, 1, shard)
        with session_scope(sessions) as session:
            merge.merge_round(session, store, params, job_id, 1)
        merged.append(load_checkpoint(store, job_id, 1))
    first, second = merged
    assert first is not None and second is not None
    assert all(torch.equal(first[k], second[k]) for k in first)

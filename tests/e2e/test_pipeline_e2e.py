"""Upload → ingest → shards on Celery → Redis → merge → gate → predict, on real processes."""

import time

import numpy as np
import pytest
from e2e_system import System
from sample_data import SEED_EXAMPLE_CSV, breast_cancer_table, table_to_csv
from sklearn.linear_model import LogisticRegression

from app.training.split import assign_rows

pytestmark = pytest.mark.e2e


def upload(system: System, name: str, data: bytes) -> dict:
    response = system.client.post("/v1/datasets", files={"file": (name, data)})
    assert response.status_code == 201, response.text
    return system.wait_for(f"/v1/datasets/{response.json()['id']}", {"ready", "failed"})


def test_breast_cancer_matches_scikit_learn_within_two_points(system: System) -> None:
    table = breast_cancer_table()
    dataset = upload(system, "breast_cancer.csv", table_to_csv(table))
    assert dataset["status"] == "ready", dataset
    assert dataset["rows"] == 569
    assert {"name": "diagnosis", "dtype": "string", "missing": 0, "min": None, "max": None,
            "mean": None, "distinct": 2} in dataset["columns"]  # fmt: skip

    spec = {
        "dataset_id": dataset["id"],
        "target": "diagnosis",
        "model": {"type": "logistic_regression"},
        "training": {"optimizer": "adam", "learning_rate": 0.05, "rounds": 12, "seed": 7,
                     "batch_size": 32, "early_stopping": None},
        "distribution": {"shards": 4},
        "validation": {"holdout_fraction": 0.2, "validation_fraction": 0.1},
        "deploy_if": {"metric": "accuracy", "min": 0.9},
    }  # fmt: skip
    created = system.client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = system.wait_for(f"/v1/jobs/{created.json()['id']}", {"succeeded", "failed", "cancelled"})
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"round": 12, "rounds": 12}

    rounds = system.client.get(f"/v1/jobs/{job['id']}/metrics").json()["data"]
    assert [r["round"] for r in rounds] == list(range(1, 13))
    assert all(sorted(s["shard"] for s in r["shards"]) == [0, 1, 2, 3] for r in rounds)
    assert sum(s["examples"] for s in rounds[0]["shards"]) == 569 - 114 - 57

    model = system.client.get(f"/v1/models/{job['model_id']}").json()
    assert model["status"] == "deployed"
    assert model["classes"] == ["benign", "malignant"]

    # scikit-learn on the same split: same training rows, same holdout.
    features = np.column_stack([table.column(i).to_numpy() for i in range(30)])
    labels = np.array(table.column("diagnosis").to_pylist())
    assignment = assign_rows(569, seed=7, holdout_fraction=0.2, validation_fraction=0.1, shards=4)
    train, holdout = assignment >= 0, assignment == -2
    mean, std = features[train].mean(axis=0), features[train].std(axis=0)
    reference = LogisticRegression(max_iter=5000).fit((features[train] - mean) / std, labels[train])
    sklearn_accuracy = reference.score((features[holdout] - mean) / std, labels[holdout])

    names = table.column_names[:30]
    records = [dict(zip(names, map(float, row), strict=True)) for row in features[holdout]]
    predicted = system.client.post(
        f"/v1/models/{model['id']}/predict", json={"inputs": records}
    ).json()["predictions"]
    api_accuracy = float(np.mean(np.array(predicted) == labels[holdout]))
    assert api_accuracy == pytest.approx(model["metrics"]["accuracy"])
    assert abs(api_accuracy - sklearn_accuracy) <= 0.02, (api_accuracy, sklearn_accuracy)


def test_seed_example_end_to_end(system: System) -> None:
    dataset = upload(system, "seed.csv", SEED_EXAMPLE_CSV)
    assert dataset["status"] == "ready"
    spec = {
        "dataset_id": dataset["id"],
        "target": "label",
        "training": {"rounds": 30, "learning_rate": 0.1},
        "distribution": {"shards": 1},
        "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    }
    created = system.client.post("/v1/jobs", json=spec).json()
    job = system.wait_for(f"/v1/jobs/{created['id']}", {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    body = system.client.post(
        f"/v1/models/{job['model_id']}/predict", json={"inputs": [{"x1": 2, "x2": 3}]}
    ).json()
    assert body["predictions"] == [1]


def test_job_posted_before_ingest_finishes_still_runs(system: System) -> None:
    response = system.client.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)})
    spec = {
        "dataset_id": response.json()["id"],
        "target": "label",
        "training": {"rounds": 2},
        "distribution": {"shards": 1},
        "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    }
    created = system.client.post("/v1/jobs", json=spec)
    assert created.status_code == 201
    job = system.wait_for(f"/v1/jobs/{created.json()['id']}", {"succeeded", "failed"})
    assert job["status"] == "succeeded", job


def test_malformed_csv_fails_naming_the_line(system: System) -> None:
    dataset = upload(system, "bad.csv", b"a,b,label\n1,2,0\n3,4,1\n5,6\n7,8,1\n")
    assert dataset["status"] == "failed"
    assert "line 4" in dataset["error"]
    assert "expected 3 fields" in dataset["error"]


def test_job_on_a_failed_dataset_is_409(system: System) -> None:
    dataset = upload(system, "bad.csv", b"a,b,label\n1,2\n")
    assert dataset["status"] == "failed"
    response = system.client.post("/v1/jobs", json={"dataset_id": dataset["id"], "target": "label"})
    assert response.status_code == 409


def test_job_with_bad_target_on_processing_dataset_fails_with_reason(system: System) -> None:
    response = system.client.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)})
    created = system.client.post(
        "/v1/jobs", json={"dataset_id": response.json()["id"], "target": "missing_column"}
    )
    if created.status_code == 422:  # ingest won the race: checked at creation
        assert created.json()["error"]["param"] == "target"
        return
    job = system.wait_for(f"/v1/jobs/{created.json()['id']}", {"succeeded", "failed"})
    assert job["status"] == "failed"
    assert job["error"]["code"] == "invalid_spec"
    assert "target" in job["error"]["message"]


def test_cuda_job_is_refused_while_no_gpu_worker_is_online(system: System) -> None:
    import redis

    from app.fleet import WorkerRegistry

    registry = WorkerRegistry(redis.Redis.from_url(system.redis_url))
    # The announcement is refreshed every 15 s (a flushed Redis forgets it meanwhile).
    deadline = time.monotonic() + 30
    while not (online := registry.online()):
        assert time.monotonic() < deadline, "the worker announces itself while it runs"
        time.sleep(0.5)
    has_gpu = any(worker.cuda_devices > 0 for worker in online)
    dataset = upload(system, "seed.csv", SEED_EXAMPLE_CSV)
    spec = {
        "dataset_id": dataset["id"],
        "target": "label",
        "training": {"rounds": 2},
        "distribution": {"shards": 1, "device": "cuda"},
        "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    }
    response = system.client.post("/v1/jobs", json=spec)
    if has_gpu:
        job = system.wait_for(f"/v1/jobs/{response.json()['id']}", {"succeeded", "failed"})
        assert job["status"] == "succeeded", job
    else:
        assert response.status_code == 422
        assert response.json()["error"]["code"] == "no_gpu_worker"


def test_batch_prediction_runs_on_the_worker(system: System) -> None:
    dataset = upload(system, "seed.csv", SEED_EXAMPLE_CSV)
    spec = {
        "dataset_id": dataset["id"],
        "target": "label",
        "training": {"rounds": 30, "learning_rate": 0.1},
        "distribution": {"shards": 1},
        "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    }
    created = system.client.post("/v1/jobs", json=spec).json()
    job = system.wait_for(f"/v1/jobs/{created['id']}", {"succeeded", "failed"})
    inputs = upload(system, "inputs.csv", b"x1,x2\n2,3\n-2,-3\n")
    url = f"/v1/models/{job['model_id']}/batch_predictions"
    batch = system.client.post(url, json={"dataset_id": inputs["id"]}).json()
    done = system.wait_for(f"{url}/{batch['id']}", {"succeeded", "failed"})
    assert done["status"] == "succeeded", done
    csv = system.client.get(f"{url}/{batch['id']}/output", params={"format": "csv"}).text
    lines = csv.strip().splitlines()
    assert lines[0].startswith('"row_id","prediction"')
    assert [line.split(",")[:2] for line in lines[1:]] == [["0", "1"], ["1", "0"]]

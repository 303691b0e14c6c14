"""Idempotency-Key on the endpoints that create: uploads, jobs, re-runs and batch
predictions."""

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV

from app.config import Settings

MakeDataset = Callable[[str, bytes], str]


def test_retried_upload_returns_the_first_dataset_and_stores_once(
    client: TestClient, settings: Settings
) -> None:
    headers = {"Idempotency-Key": "upload-1"}
    files = {"file": ("seed.csv", SEED_EXAMPLE_CSV)}
    first = client.post("/v1/datasets", files=files, headers=headers)
    second = client.post("/v1/datasets", files=files, headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert len(client.get("/v1/datasets").json()["data"]) == 1
    assert len(list((settings.blob_dir / "datasets").iterdir())) == 1
    other = client.post("/v1/datasets", files=files, headers={"Idempotency-Key": "upload-2"})
    assert other.json()["id"] != first.json()["id"]


def test_retried_job_returns_the_first_job(client: TestClient, ready_dataset: MakeDataset) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    headers = {"Idempotency-Key": "job-1"}
    first = client.post("/v1/jobs", json=body, headers=headers)
    second = client.post("/v1/jobs", json=body, headers=headers)
    assert first.status_code == 201 and second.status_code == 201
    assert second.json()["id"] == first.json()["id"]
    assert len(client.get("/v1/jobs").json()["data"]) == 1


def test_same_key_with_another_body_is_422(client: TestClient, ready_dataset: MakeDataset) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    headers = {"Idempotency-Key": "job-2"}
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    assert client.post("/v1/jobs", json=body, headers=headers).status_code == 201
    changed = {**body, "training": {"rounds": 3}}
    response = client.post("/v1/jobs", json=changed, headers=headers)
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "idempotency_key_reused"


def test_a_failed_request_does_not_burn_its_key(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    headers = {"Idempotency-Key": "job-3"}
    bad = {"dataset_id": dataset_id, "target": "nope"}
    assert client.post("/v1/jobs", json=bad, headers=headers).status_code == 422
    good = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    assert client.post("/v1/jobs", json=good, headers=headers).status_code == 201


def test_retried_rerun_returns_the_first_rerun(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    source = client.post("/v1/jobs", json=body).json()["id"]
    other = client.post("/v1/jobs", json=body).json()["id"]
    headers = {"Idempotency-Key": "rerun-1"}
    first = client.post(f"/v1/jobs/{source}/rerun", headers=headers)
    second = client.post(f"/v1/jobs/{source}/rerun", headers=headers)
    assert first.status_code == second.status_code == 201
    assert second.json()["id"] == first.json()["id"] != source
    assert len(client.get("/v1/jobs").json()["data"]) == 3
    # The same key for a re-run of another job is a different request.
    reused = client.post(f"/v1/jobs/{other}/rerun", headers=headers)
    assert reused.status_code == 422
    assert reused.json()["error"]["code"] == "idempotency_key_reused"
    assert client.post(f"/v1/jobs/{source}/rerun").json()["id"] != first.json()["id"]


def test_retried_batch_prediction_returns_the_first(
    client: TestClient, ready_dataset: MakeDataset, seed_model_job: dict[str, Any]
) -> None:
    job = seed_model_job
    url = f"/v1/models/{job['model_id']}/batch_predictions"
    dataset_id = job["spec"]["dataset_id"]
    headers = {"Idempotency-Key": "batch-1"}
    first = client.post(url, json={"dataset_id": dataset_id}, headers=headers)
    second = client.post(url, json={"dataset_id": dataset_id}, headers=headers)
    assert first.status_code == second.status_code == 201, second.text
    assert second.json()["id"] == first.json()["id"]
    other = client.post(url, json={"dataset_id": dataset_id}, headers={"Idempotency-Key": "b-2"})
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]

    elsewhere = ready_dataset("more.csv", SEED_EXAMPLE_CSV)
    reused = client.post(url, json={"dataset_id": elsewhere}, headers=headers)
    assert reused.status_code == 422, reused.text
    assert reused.json()["error"]["code"] == "idempotency_key_reused"

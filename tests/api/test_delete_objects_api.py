"""Deleting models and jobs, undeploying, and the model's lineage: what a user manages.
The orphan checks count every blob, every row of every table and every Redis key of
the test's database before and after, and look for the deleted ids anywhere in them."""

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from dbsetup import issue_key
from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.registry import batch
from app.storage import BlobStore
from app.tables import Base

TrainJob = Callable[..., dict[str, Any]]
SPEC = {
    "target": "label",
    "distribution": {"shards": 2},
    "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    "training": {"rounds": 3, "learning_rate": 0.1},
}


class Snapshot:
    """Every blob, every row and every Redis key, as text that can be searched for ids."""

    def __init__(self, store: BlobStore, sessions: sessionmaker[Session], client: redis.Redis):
        root = store.path("x").parent
        self.blobs = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        self.rows: dict[str, list[str]] = {}
        with sessions() as session:
            for table in Base.metadata.sorted_tables:
                self.rows[table.name] = [repr(tuple(r)) for r in session.execute(select(table))]
        self.keys = sorted(k.decode() for k in client.keys("*"))  # type: ignore[union-attr]

    def counts(self) -> Counter[str]:
        counts = Counter({f"rows:{t}": len(r) for t, r in self.rows.items()})
        counts["blobs"] = len(self.blobs)
        counts["redis_keys"] = len(self.keys)
        return counts

    def mentions(self, object_id: str) -> list[str]:
        found = [b for b in self.blobs if object_id in b] + [k for k in self.keys if object_id in k]
        for table, rows in self.rows.items():
            found += [f"{table}: {r}" for r in rows if object_id in r]
        return found


@pytest.fixture
def snapshot(
    store: BlobStore, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> Callable[[], Snapshot]:
    return lambda: Snapshot(store, sessions, redis_client)


def _error(response: Any, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    assert set(error) == {"type", "code", "message", "param"}


def test_model_lists_its_job_and_dataset(client: TestClient, train_job: TrainJob) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)
    model = client.get(f"/v1/models/{job['model_id']}").json()
    assert model["job_id"] == job["id"]
    assert model["dataset_id"] == job["spec"]["dataset_id"]
    listed = client.get("/v1/models").json()["data"]
    assert [(m["id"], m["job_id"], m["dataset_id"]) for m in listed] == [
        (job["model_id"], job["id"], job["spec"]["dataset_id"])
    ]


def test_undeploy_stops_serving_and_deploy_brings_it_back(
    client: TestClient, train_job: TrainJob
) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)
    model_id = job["model_id"]
    inputs = {"inputs": [{"x1": 2, "x2": 3}]}
    assert client.post(f"/v1/models/{model_id}/predict", json=inputs).status_code == 200

    undeployed = client.post(f"/v1/models/{model_id}/undeploy")
    assert undeployed.status_code == 200, undeployed.text
    assert undeployed.json()["status"] == "undeployed"
    # Idempotent: a second undeploy answers the same and records nothing more.
    assert client.post(f"/v1/models/{model_id}/undeploy").json()["status"] == "undeployed"
    _error(client.post(f"/v1/models/{model_id}/predict", json=inputs), 409, "model_not_deployed")
    dataset_id = job["spec"]["dataset_id"]
    _error(
        client.post(f"/v1/models/{model_id}/batch_predictions", json={"dataset_id": dataset_id}),
        409,
        "model_not_deployed",
    )
    assert [m["id"] for m in client.get("/v1/models?status=undeployed").json()["data"]] == [
        model_id
    ]

    deployed = client.post(f"/v1/models/{model_id}/deploy")
    assert deployed.json()["status"] == "deployed"
    assert client.post(f"/v1/models/{model_id}/predict", json=inputs).status_code == 200
    types = [e["type"] for e in client.get(f"/v1/jobs/{job['id']}/events?limit=100").json()["data"]]
    assert types.count("model.undeployed") == 1
    assert types.count("model.redeployed") == 1
    assert "model.promoted" not in types


def test_delete_model_then_job_leaves_nothing(
    client: TestClient,
    settings: Settings,
    train_job: TrainJob,
    snapshot: Callable[[], Snapshot],
    sessions: sessionmaker[Session],
    store: BlobStore,
) -> None:
    before = snapshot()
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)
    job_id, model_id, dataset_id = job["id"], job["model_id"], job["spec"]["dataset_id"]
    inputs = {"inputs": [{"x1": 2, "x2": 3}]}
    assert client.post(f"/v1/models/{model_id}/predict", json=inputs).status_code == 200
    assert client.get(f"/v1/models/{model_id}/artifact?format=onnx").status_code == 200

    # A batch prediction in flight reads the artifact: the model cannot go yet. Its
    # Idempotency-Key row must go with it.
    created = client.post(
        f"/v1/models/{model_id}/batch_predictions",
        json={"dataset_id": dataset_id},
        headers={"Idempotency-Key": "batch-to-delete"},
    ).json()
    _error(client.delete(f"/v1/models/{model_id}"), 409, "model_in_use")
    with session_scope(sessions) as session:
        batch.run_batch_prediction(session, store, created["id"])
    output = f"/v1/models/{model_id}/batch_predictions/{created['id']}/output"
    assert client.get(output).status_code == 200
    # The job's model still exists: the job cannot go before it.
    _error(client.delete(f"/v1/jobs/{job_id}"), 409, "job_has_model")

    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'other')}"}
    _error(client.delete(f"/v1/models/{model_id}", headers=other), 404, "not_found")
    _error(client.delete(f"/v1/jobs/{job_id}", headers=other), 404, "not_found")
    _error(client.post(f"/v1/models/{model_id}/undeploy", headers=other), 404, "not_found")

    with_everything = snapshot()
    assert with_everything.mentions(model_id) and with_everything.mentions(job_id)
    assert any(m.startswith("idempotency_keys:") for m in with_everything.mentions(created["id"]))
    assert any(k.startswith(f"shardtrain:{job_id}:") for k in with_everything.keys)
    assert any(b.startswith(f"jobs/{job_id}/checkpoints/") for b in with_everything.blobs)

    deleted = client.delete(f"/v1/models/{model_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": model_id, "object": "model", "deleted": True}
    _error(client.delete(f"/v1/models/{model_id}"), 404, "not_found")
    _error(client.get(f"/v1/models/{model_id}"), 404, "not_found")
    # Served a moment ago from this process's predictor cache, and still refused.
    _error(client.post(f"/v1/models/{model_id}/predict", json=inputs), 404, "not_found")
    _error(client.get(output), 404, "not_found")
    # The model's deletion is in its job's history while the job remains.
    events = client.get(f"/v1/jobs/{job_id}/events?limit=100").json()["data"]
    assert "model.deleted" in [e["type"] for e in events]
    assert client.get(f"/v1/jobs/{job_id}").status_code == 200

    deleted = client.delete(f"/v1/jobs/{job_id}")
    assert deleted.status_code == 200, deleted.text
    assert deleted.json() == {"id": job_id, "object": "job", "deleted": True}
    _error(client.delete(f"/v1/jobs/{job_id}"), 404, "not_found")
    _error(client.get(f"/v1/jobs/{job_id}"), 404, "not_found")
    _error(client.get(f"/v1/jobs/{job_id}/events"), 404, "not_found")

    after = snapshot()
    for object_id in (job_id, model_id, created["id"]):
        assert after.mentions(object_id) == [], object_id
    # What remains beyond the baseline is the job's dataset (uploaded by train_job: TrainJob),
    # its blobs and rows, and the other tenant with its key; the broker's queue keys
    # and the predict rate-limit counters come and go with traffic, not with objects.
    grown = after.counts() - before.counts()
    assert grown["rows:jobs"] == grown["rows:models"] == 0
    assert grown["rows:job_rounds"] == grown["rows:job_events"] == 0
    assert grown["rows:batch_predictions"] == 0
    assert grown["rows:datasets"] == 1
    assert {b for b in after.blobs if b not in before.blobs} == {
        b for b in after.blobs if b.startswith(f"datasets/{dataset_id}/")
    }
    assert not [k for k in after.keys if k not in before.keys and k.startswith("shardtrain:job_")]


def test_unfinished_job_cannot_be_deleted(
    client: TestClient, ready_dataset: Callable[[str, bytes], str]
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    job = client.post("/v1/jobs", json={"dataset_id": dataset_id, **SPEC}).json()
    _error(client.delete(f"/v1/jobs/{job['id']}"), 409, "job_not_finished")
    assert client.post(f"/v1/jobs/{job['id']}/cancel").json()["status"] == "cancelled"
    deleted = client.delete(f"/v1/jobs/{job['id']}")
    assert deleted.status_code == 200, deleted.text
    _error(client.get(f"/v1/jobs/{job['id']}"), 404, "not_found")


def test_deleted_model_is_not_served_by_another_api_process(
    client: TestClient, settings: Settings, api_key: str, train_job: TrainJob
) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)
    inputs = {"inputs": [{"x1": 2, "x2": 3}]}
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(create_app(settings), headers=headers) as second:
        url = f"/v1/models/{job['model_id']}/predict"
        assert second.post(url, json=inputs).status_code == 200
        assert client.delete(f"/v1/models/{job['model_id']}").status_code == 200
        _error(second.post(url, json=inputs), 404, "not_found")
    assert not Path(settings.blob_dir, "models", job["model_id"]).exists()


def test_job_without_holdout_says_so(client: TestClient, train_job: TrainJob) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)
    assert job["status"] == "succeeded"
    assert job["metrics"] == {
        "round": job["metrics"]["round"],
        "split": "none",
        "reason": "the job has no holdout rows (validation.holdout_fraction: 0.0), "
        "so the model has no holdout metrics",
    }
    assert client.get(f"/v1/models/{job['model_id']}").json()["metrics"] == {}

"""A whole job, upload to model, with every blob going through an S3 that answers one
request in four with 503 SlowDown and stalls some reads past the client's timeout: the
retries absorb it all, and the model is the one a healthy store gives."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from dbsetup import issue_key
from fastapi.testclient import TestClient
from inprocess import run_job
from s3_faults import FaultyS3, faulty_s3
from s3_server import s3_endpoint as moto_endpoint
from s3_server import s3_test_client
from safetensors.numpy import load
from sample_data import breast_cancer_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.datasets.ingest_run import ingest_dataset
from app.db import session_scope
from app.main import create_app
from app.paramstore import ParamStore
from app.storage import open_store


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


def train(settings: Settings, sessions: sessionmaker[Session], params: ParamStore) -> Any:
    """Upload, ingest, train and read back the job, all through `settings`' store."""
    store = open_store(settings)
    headers = {"Authorization": f"Bearer {issue_key(settings.database_url, 'tests')}"}
    with TestClient(create_app(settings), raise_server_exceptions=False, headers=headers) as client:
        upload = client.post(
            "/v1/datasets", files={"file": ("bc.csv", table_to_csv(breast_cancer_table()))}
        )
        assert upload.status_code == 201, upload.text
        with session_scope(sessions) as session:
            ingest_dataset(session, store, upload.json()["id"])
        spec = {
            "dataset_id": upload.json()["id"],
            "target": "diagnosis",
            "model": {"type": "logistic_regression"},
            "training": {"rounds": 4, "learning_rate": 0.05, "optimizer": "adam", "seed": 3},
            "distribution": {"shards": 2},
        }
        created = client.post("/v1/jobs", json=spec)
        assert created.status_code == 201, created.text
        run_job(sessions, store, params, created.json()["id"])
        job = client.get(f"/v1/jobs/{created.json()['id']}").json()
        assert job["status"] == "succeeded", job
        artifact = load(store.read_bytes(f"models/{job['model_id']}/model.safetensors"))
        # The tensors, not the file: its metadata names this run's job and model ids.
        return job["metrics"], {name: array.tolist() for name, array in artifact.items()}


# The store is what is under test; PostgreSQL alone suffices for the database.
@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
def test_a_job_succeeds_through_503s_and_stalls_with_the_healthy_stores_model(
    endpoint: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    params: ParamStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    bucket = f"pipeline-{uuid.uuid4().hex[:8]}"
    s3_test_client(endpoint).create_bucket(Bucket=bucket)

    def on(url: str, prefix: str) -> Settings:
        monkeypatch.setenv("AWS_ENDPOINT_URL", url)
        return settings.model_copy(
            update={"storage_url": f"s3://{bucket}/{prefix}", "s3_read_timeout_s": 0.5}
        )

    healthy = train(on(endpoint, "healthy"), sessions, params)
    faults: FaultyS3
    with faulty_s3(endpoint, stall_s=2.0) as (url, faults):
        faults.fail("503", times=None, every=4)
        faults.fail("stall", times=3, every=10)
        faulty = train(on(url, "faulty"), sessions, params)
    assert faults.count("503") >= 10, faults.requests
    assert faults.count("stall") == 3
    assert faulty == healthy

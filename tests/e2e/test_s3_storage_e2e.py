"""The whole pipeline with blobs in S3: uvicorn and a prefork worker on PostgreSQL,
storing through a real S3-protocol server on a local port (moto's server mode), with
nothing under the local data directory but each host's cache."""

import logging
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from e2e_system import System, running_system
from moto.server import ThreadedMotoServer
from sample_data import breast_cancer_table, table_to_csv

from app.storage.s3 import s3_client

pytestmark = pytest.mark.e2e

# A Redis database of its own: the session's system, on local storage, must never
# take this one's tasks.
S3_REDIS_URL = urlunsplit(urlsplit(os.environ["SHARDTRAIN_E2E_REDIS_URL"])._replace(path="/13"))
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    name = f"shardtrain-e2e-{uuid.uuid4().hex[:8]}"
    client(s3_endpoint).create_bucket(Bucket=name)
    return name


def client(endpoint: str) -> Any:
    return s3_client(
        endpoint_url=endpoint,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )


def objects(endpoint: str, bucket: str) -> list[str]:
    found: list[str] = []
    for page in client(endpoint).get_paginator("list_objects_v2").paginate(Bucket=bucket):
        found += [item["Key"] for item in page.get("Contents", [])]
    return found


@pytest.fixture(scope="module")
def s3_system(
    tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, bucket: str
) -> Iterator[System]:
    redis.Redis.from_url(S3_REDIS_URL).flushdb()
    env = {
        "SHARDTRAIN_STORAGE_URL": f"s3://{bucket}/shardtrain",
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_REGION": "us-east-1",
        **CREDENTIALS,
    }
    try:
        with running_system(
            tmp_path_factory.mktemp("e2e-s3"), S3_REDIS_URL, extra_env=env
        ) as started:
            yield started
    finally:
        redis.Redis.from_url(S3_REDIS_URL).flushdb()


def local_blobs(data_dir: Path) -> list[Path]:
    blobs = data_dir / "blobs"
    return [p for p in blobs.rglob("*") if p.is_file()] if blobs.exists() else []


@pytest.mark.parametrize(
    "model",
    [{"type": "logistic_regression"}, {"type": "gradient_boosted_trees", "n_trees": 10}],
    ids=["logistic", "trees"],
)
def test_a_job_trains_serves_and_deletes_with_every_blob_in_s3(
    s3_system: System, s3_endpoint: str, bucket: str, model: dict
) -> None:
    system = s3_system
    upload = system.client.post(
        "/v1/datasets", files={"file": ("bc.csv", table_to_csv(breast_cancer_table()))}
    )
    assert upload.status_code == 201, upload.text
    dataset = system.wait_for(f"/v1/datasets/{upload.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready", dataset
    stored = objects(s3_endpoint, bucket)
    assert f"shardtrain/datasets/{dataset['id']}/raw" in stored
    assert f"shardtrain/datasets/{dataset['id']}/data.parquet" in stored

    spec: dict[str, Any] = {
        "dataset_id": dataset["id"],
        "target": "diagnosis",
        "model": model,
        "distribution": {"shards": 2},
    }
    if model["type"] == "logistic_regression":
        spec["training"] = {"rounds": 5, "learning_rate": 0.05, "optimizer": "adam"}
    created = system.client.post("/v1/jobs", json=spec)
    assert created.status_code == 201, created.text
    job = system.wait_for(f"/v1/jobs/{created.json()['id']}", {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    assert job["metrics"]["accuracy"] > 0.85, job["metrics"]

    stored = objects(s3_endpoint, bucket)
    assert any(key.startswith(f"shardtrain/jobs/{job['id']}/") for key in stored)
    assert any(key.startswith(f"shardtrain/models/{job['model_id']}/") for key in stored)
    # Blobs live in the bucket only; the data directory holds the hosts' caches.
    assert local_blobs(system.data_dir) == []

    first = breast_cancer_table().slice(0, 1).to_pylist()[0]
    row = {name: value for name, value in first.items() if name != "diagnosis"}
    predicted = system.client.post(f"/v1/models/{job['model_id']}/predict", json={"inputs": [row]})
    assert predicted.status_code == 200, predicted.text
    assert predicted.json()["predictions"][0] in ("benign", "malignant")
    artifact = system.client.get(f"/v1/models/{job['model_id']}/artifact")
    assert artifact.status_code == 200 and len(artifact.content) > 100

    assert system.client.delete(f"/v1/models/{job['model_id']}").status_code == 200
    assert system.client.delete(f"/v1/jobs/{job['id']}").status_code == 200
    assert system.client.delete(f"/v1/datasets/{dataset['id']}").status_code == 200
    left = [
        key
        for key in objects(s3_endpoint, bucket)
        if dataset["id"] in key or job["id"] in key or job["model_id"] in key
    ]
    assert left == []

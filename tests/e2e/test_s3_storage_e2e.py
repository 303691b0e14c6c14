"""The whole pipeline with blobs in S3: uvicorn and a prefork worker on PostgreSQL,
storing through a real S3-protocol server on a local port (moto's server mode), with
nothing under the local data directory but each host's cache."""

import hashlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
import redis
from dbsetup import ROOT
from e2e_system import System, running_system
from s3_server import s3_endpoint as moto_endpoint
from s3_server import s3_test_client
from sample_data import breast_cancer_table, table_to_csv

import shardtrain
from app.fleet import WorkerRegistry

pytestmark = pytest.mark.e2e

# A Redis database of its own: the session's system, on local storage, must never
# take this one's tasks.
S3_REDIS_URL = urlunsplit(urlsplit(os.environ["SHARDTRAIN_E2E_REDIS_URL"])._replace(path="/13"))
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str) -> str:
    name = f"shardtrain-e2e-{uuid.uuid4().hex[:8]}"
    client(s3_endpoint).create_bucket(Bucket=name)
    return name


def client(endpoint: str) -> Any:
    return s3_test_client(endpoint)


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
        "SHARDTRAIN_IMPORT_ALLOWED_PREFIXES": f"s3://{bucket}/lake/",
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
    s3_system: System, s3_endpoint: str, bucket: str, model: dict, tmp_path: Path
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
    # The artifact comes from the bucket, through a presigned URL, not through the API.
    for format, suffix in (("safetensors", "safetensors"), ("onnx", "onnx")):
        artifact = system.client.get(
            f"/v1/models/{job['model_id']}/artifact", params={"format": format}
        )
        assert artifact.status_code == 307, artifact.text
        location = artifact.headers["location"]
        assert location.startswith(s3_endpoint) and "Signature" in location
        downloaded = httpx.get(location)
        assert downloaded.status_code == 200 and len(downloaded.content) > 100
        assert f"{job['model_id']}.{suffix}" in downloaded.headers["content-disposition"]
    # The SDK follows it, without sending its API key to the bucket.
    api_key = system.client.headers["Authorization"].removeprefix("Bearer ")
    with shardtrain.Client(api_key=api_key, base_url=system.base_url) as sdk:
        saved = sdk.models.download(job["model_id"], tmp_path)
    assert (
        saved.read_bytes()
        == client(s3_endpoint)
        .get_object(Bucket=bucket, Key=f"shardtrain/models/{job['model_id']}/model.safetensors")[
            "Body"
        ]
        .read()
    )

    assert system.client.delete(f"/v1/models/{job['model_id']}").status_code == 200
    assert system.client.delete(f"/v1/jobs/{job['id']}").status_code == 200
    assert system.client.delete(f"/v1/datasets/{dataset['id']}").status_code == 200
    left = [
        key
        for key in objects(s3_endpoint, bucket)
        if dataset["id"] in key or job["id"] in key or job["model_id"] in key
    ]
    assert left == []


def start_worker(system: System, name: str, data_dir: Path) -> subprocess.Popen[bytes]:
    """`python -m workers` as a host with no API runs it: its own data dir and cache,
    nothing shared with the other worker but PostgreSQL, Redis and the bucket."""
    env = {**system.processes.env, "SHARDTRAIN_DATA_DIR": str(data_dir)}
    log = (data_dir.parent / f"{name}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, "-m", "workers", "--name", name], cwd=ROOT, env=env, stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def shard_workers(system: System, job_id: str) -> list[dict[str, str]]:
    events = system.client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()
    return [e["data"]["workers"] for e in events["data"] if e["type"] == "round.completed"]


def wait_online(worker: subprocess.Popen[bytes], name: str, since: float = 0.0) -> None:
    """Until `name` has announced itself after `since`: a killed worker's entry stays
    in the registry until its heartbeat expires."""
    registry = WorkerRegistry(redis.Redis.from_url(S3_REDIS_URL))
    deadline = time.monotonic() + 90
    while not any(name in w.hostname and w.seen_at > since for w in registry.online()):
        assert worker.poll() is None and time.monotonic() < deadline, f"{name} did not come up"
        time.sleep(0.2)


def train_on_both(system: System, dataset_id: str, seed: int) -> set[str]:
    """A 4-shard job to success, and the workers its rounds' events name."""
    spec = {
        "dataset_id": dataset_id,
        "target": "diagnosis",
        "model": {"type": "logistic_regression"},
        "training": {"rounds": 30, "learning_rate": 0.05, "optimizer": "adam", "seed": seed},
        "distribution": {"shards": 4},
    }
    job_id = system.client.post("/v1/jobs", json=spec).json()["id"]
    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed"})
    assert job["status"] == "succeeded", job
    return {name for workers in shard_workers(system, job_id) for name in workers.values()}


def test_two_workers_with_no_shared_disk_train_one_job_and_one_restarts_empty(
    s3_system: System, tmp_path: Path
) -> None:
    system = s3_system
    second = start_worker(system, "second", tmp_path / "second")
    try:
        wait_online(second, "second")
        upload = system.client.post(
            "/v1/datasets", files={"file": ("bc.csv", table_to_csv(breast_cancer_table()))}
        )
        dataset = system.wait_for(f"/v1/datasets/{upload.json()['id']}", {"ready", "failed"})
        names = train_on_both(system, dataset["id"], seed=1)
        assert "shardtrain@second" in names and len(names) == 2, names
        # The second host dies and comes back with an empty disk: it fetches what it
        # needs from the bucket again.
        second.kill()
        second.wait()
        shutil.rmtree(tmp_path / "second")
        restarted = time.time()
        second = start_worker(system, "second", tmp_path / "second")
        wait_online(second, "second", since=restarted)
        assert "shardtrain@second" in train_on_both(system, dataset["id"], seed=2)
        assert any((tmp_path / "second" / "cache").rglob("*.blob"))
    finally:
        second.kill()
        second.wait()


def test_an_imported_object_is_copied_by_the_worker_and_trains(
    s3_system: System, s3_endpoint: str, bucket: str
) -> None:
    system = s3_system
    data = table_to_csv(breast_cancer_table())
    client(s3_endpoint).put_object(Bucket=bucket, Key="lake/bc.csv", Body=data)
    url = f"s3://{bucket}/lake/bc.csv"
    created = system.client.post("/v1/datasets", json={"url": url, "name": "bc"})
    assert created.status_code == 201, created.text
    dataset = system.wait_for(f"/v1/datasets/{created.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready", dataset
    assert (dataset["source_url"], dataset["rows"]) == (url, breast_cancer_table().num_rows)
    assert dataset["sha256"] == hashlib.sha256(data).hexdigest()
    copied = client(s3_endpoint).get_object(
        Bucket=bucket, Key=f"shardtrain/datasets/{dataset['id']}/raw"
    )
    assert copied["Body"].read() == data

    outside = system.client.post("/v1/datasets", json={"url": f"s3://{bucket}/shardtrain/x"})
    assert outside.status_code == 403, outside.text
    assert f"s3://{bucket}/shardtrain/x" in outside.json()["error"]["message"]
    assert system.client.delete(f"/v1/datasets/{dataset['id']}").status_code == 200
    assert not [key for key in objects(s3_endpoint, bucket) if dataset["id"] in key]
    assert "lake/bc.csv" in objects(s3_endpoint, bucket)


def test_a_shard_object_lost_mid_job_fails_it_with_the_key_and_leaves_nothing(
    s3_system: System, s3_endpoint: str, bucket: str
) -> None:
    system = s3_system
    upload = system.client.post(
        "/v1/datasets", files={"file": ("bc.csv", table_to_csv(breast_cancer_table()))}
    )
    dataset = system.wait_for(f"/v1/datasets/{upload.json()['id']}", {"ready", "failed"})
    spec = {
        "dataset_id": dataset["id"],
        "target": "diagnosis",
        "model": {"type": "logistic_regression"},
        "training": {"rounds": 500, "learning_rate": 0.05, "optimizer": "adam"},
        "distribution": {"shards": 2},
    }
    job_id = system.client.post("/v1/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while not shard_workers(system, job_id):
        assert time.monotonic() < deadline, "no round completed"
        time.sleep(0.2)
    # Someone empties part of the bucket behind the service's back.
    shard = f"shardtrain/jobs/{job_id}/shards/0"
    lost = [key for key in objects(s3_endpoint, bucket) if key.startswith(shard)]
    assert lost
    for key in lost:
        client(s3_endpoint).delete_object(Bucket=bucket, Key=key)

    job = system.wait_for(f"/v1/jobs/{job_id}", {"succeeded", "failed"})
    assert job["status"] == "failed", job
    assert job["error"]["code"] == "shard_failed", job["error"]
    assert "shards/0" in job["error"]["message"] and "no object" in job["error"]["message"]
    assert job["model_id"] is None
    assert system.client.delete(f"/v1/jobs/{job_id}").status_code == 200
    assert not [key for key in objects(s3_endpoint, bucket) if job_id in key]

"""A Redis outage on the live system (uvicorn, a prefork worker and beat on a
redis-server of the test's own, which it kills and restarts): writes made during it are
answered at once and carried out once Redis is back, and a running job survives a
restart that loses every key and queued message."""

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_system import System, running_system
from own_redis import OwnRedis
from sample_data import SEED_EXAMPLE_CSV
from test_faults_e2e import SPEC, synthetic_csv

pytestmark = pytest.mark.e2e

DONE = {"succeeded", "failed", "cancelled"}


@pytest.fixture(scope="module")
def own_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.kill()


@pytest.fixture(scope="module")
def outage_system(
    tmp_path_factory: pytest.TempPathFactory, own_redis: OwnRedis
) -> Iterator[System]:
    with running_system(Path(tmp_path_factory.mktemp("outage")), own_redis.url) as system:
        yield system


@pytest.fixture
def redis_back(own_redis: OwnRedis) -> Iterator[None]:
    """Whatever a test does to Redis, the next one starts with it up."""
    yield
    own_redis.kill()
    own_redis.start()


def test_writes_during_an_outage_are_answered_and_carried_out_once_redis_is_back(
    outage_system: System, own_redis: OwnRedis, redis_back: None
) -> None:
    client = outage_system.client
    ready = client.post("/v1/datasets", files={"file": ("s.csv", SEED_EXAMPLE_CSV)}).json()
    assert (
        outage_system.wait_for(f"/v1/datasets/{ready['id']}", {"ready", "failed"})["status"]
        == "ready"
    )
    own_redis.kill()
    upload = client.post("/v1/datasets", files={"file": ("s.csv", SEED_EXAMPLE_CSV)})
    assert upload.status_code == 201, upload.text
    job = client.post(
        "/v1/jobs",
        json={"dataset_id": ready["id"], "target": "label", "distribution": {"shards": 1}},
        headers={"Idempotency-Key": "during-the-outage"},
    )
    assert job.status_code == 201, job.text
    time.sleep(2)  # down for a while: beat's relays and the watchdog's sweeps fail too
    assert client.get(f"/v1/datasets/{upload.json()['id']}").json()["status"] == "processing"
    own_redis.start()
    dataset = outage_system.wait_for(f"/v1/datasets/{upload.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready" and dataset["rows"] == 3
    finished = outage_system.wait_for(f"/v1/jobs/{job.json()['id']}", DONE)
    assert finished["status"] == "succeeded", finished
    jobs = client.get("/v1/jobs", params={"limit": 100}).json()["data"]
    assert [j["id"] for j in jobs if j["spec"]["dataset_id"] == ready["id"]] == [job.json()["id"]]


def test_a_running_job_survives_a_redis_restart(
    outage_system: System, own_redis: OwnRedis, redis_back: None
) -> None:
    client = outage_system.client
    # About a second of training per shard: the kill must land while one runs (8,000
    # rows trained in 0.2 s once workers preload torch's optimizer stack, and the
    # shard was over before Redis went down).
    upload = client.post("/v1/datasets", files={"file": ("s.csv", synthetic_csv(40_000))}).json()
    assert (
        outage_system.wait_for(f"/v1/datasets/{upload['id']}", {"ready", "failed"})["status"]
        == "ready"
    )
    job_id = client.post("/v1/jobs", json={"dataset_id": upload["id"], **SPEC}).json()["id"]
    outage_system.wait_for(f"/v1/jobs/{job_id}", {"running", *DONE})
    # Killed only once a shard task of the job is in a worker's hands, so the outage
    # lands mid-shard rather than on a message still in the broker.
    deadline = time.monotonic() + 60
    while f"{job_id}-r1-s" not in outage_system.worker_log.read_text():
        assert time.monotonic() < deadline, "no shard of round 1 reached the worker"
        time.sleep(0.05)
    own_redis.kill()
    time.sleep(5)
    own_redis.start()
    finished = outage_system.wait_for(f"/v1/jobs/{job_id}", DONE)
    assert finished["status"] == "succeeded", finished
    assert finished["progress"]["round"] == SPEC["training"]["rounds"]
    log = outage_system.worker_log.read_text()
    # The outage landed mid-shard, which rode it out instead of failing the job: the
    # shard met it either at a still-wanted check during training (and trained on) or
    # at its write (and retried it).
    assert (
        "Redis unreachable during shard" in log
        or "could not check whether the shard is still wanted" in log
    ), log[-3000:]
    assert "shard_failed" not in log and "Unrecoverable error" not in log

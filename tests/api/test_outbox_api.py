"""A Redis outage delays dispatch but never half-does a write: the object and its message
commit together (the outbox), the API answers as usual, and the message reaches the
broker once Redis answers again. Runs on PostgreSQL and SQLite, against a redis-server
of the test's own that it kills and restarts."""

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from own_redis import OwnRedis
from sample_data import SEED_EXAMPLE_CSV, iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.main import create_app
from app.outbox import relay_pending
from app.outbox.repository import OutboxRepository
from app.tables import OutboxMessage


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


@pytest.fixture
def outage_client(settings: Settings, api_key: str, own_redis: OwnRedis) -> Iterator[TestClient]:
    """The app on the test's databases, with its broker on the test's own Redis."""
    app = create_app(settings.model_copy(update={"redis_url": own_redis.url}))
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(app, raise_server_exceptions=False, headers=headers) as client:
        yield client


def pending(sessions: sessionmaker[Session]) -> list[OutboxMessage]:
    with session_scope(sessions) as session:
        return OutboxRepository(session).pending()


def queued_tasks(own_redis: OwnRedis, queue: str) -> list[tuple[str, list[Any]]]:
    """(task name, args) of every message waiting in a Celery queue on the own Redis, in
    the order a worker takes them (kombu pushes on the left and pops on the right)."""
    found = []
    for raw in reversed(own_redis.client().lrange(queue, 0, -1)):
        message = json.loads(raw)
        # kombu's Redis transport sends the body base64-encoded: [args, kwargs, embed].
        args = json.loads(base64.b64decode(message["body"]))[0]
        found.append((message["headers"]["task"], args))
    return found


def relay(client: TestClient, sessions: sessionmaker[Session]) -> int:
    with session_scope(sessions) as session:
        return relay_pending(session, client.app.state.dispatcher)  # type: ignore[attr-defined]


def test_with_redis_up_the_message_is_sent_at_once_and_nothing_stays_pending(
    outage_client: TestClient, own_redis: OwnRedis, sessions: sessionmaker[Session]
) -> None:
    created = outage_client.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)})
    assert created.status_code == 201, created.text
    assert pending(sessions) == []
    assert queued_tasks(own_redis, "ingest") == [
        ("shardtrain.ingest_dataset", [created.json()["id"]])
    ]


def test_an_upload_during_an_outage_is_stored_and_its_ingest_sent_once_redis_is_back(
    outage_client: TestClient, own_redis: OwnRedis, sessions: sessionmaker[Session]
) -> None:
    own_redis.kill()
    created = outage_client.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)})
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    assert outage_client.get(f"/v1/datasets/{dataset_id}").json()["status"] == "processing"
    (message,) = pending(sessions)
    assert (message.kind, message.args) == ("ingest", {"dataset_id": dataset_id})
    assert message.attempts == 1 and "onnect" in (message.last_error or "")

    assert relay(outage_client, sessions) == 0  # still down: kept, not lost
    assert len(pending(sessions)) == 1
    own_redis.start()
    assert relay(outage_client, sessions) == 1
    assert pending(sessions) == []
    assert queued_tasks(own_redis, "ingest") == [("shardtrain.ingest_dataset", [dataset_id])]


def test_a_job_posted_during_an_outage_is_queued_once_and_a_retry_is_not_a_duplicate(
    outage_client: TestClient,
    own_redis: OwnRedis,
    sessions: sessionmaker[Session],
    ready_dataset: Callable[[str, bytes], str],
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    own_redis.kill()
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    headers = {"Idempotency-Key": "outage-1"}
    created = outage_client.post("/v1/jobs", json=body, headers=headers)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert created.json()["status"] == "queued"
    again = outage_client.post("/v1/jobs", json=body, headers=headers)
    assert again.status_code == 201 and again.json()["id"] == job_id
    assert [m.args for m in pending(sessions)] == [{"job_id": job_id}]
    assert [j["id"] for j in outage_client.get("/v1/jobs").json()["data"]] == [job_id]

    own_redis.start()
    assert relay(outage_client, sessions) == 1
    assert queued_tasks(own_redis, "merge") == [("shardtrain.prepare_job", [job_id])]


def test_a_batch_prediction_during_an_outage_is_sent_once_redis_is_back(
    outage_client: TestClient,
    own_redis: OwnRedis,
    sessions: sessionmaker[Session],
    train_job: Callable[..., dict[str, Any]],
    ready_dataset: Callable[[str, bytes], str],
) -> None:
    training = {"local_epochs": 5, "batch_size": 16, "rounds": 3}
    job = train_job("iris.csv", table_to_csv(iris_table()), target="species", training=training)
    unlabeled = ready_dataset("x.csv", table_to_csv(iris_table().drop_columns(["species"])))
    own_redis.kill()
    created = outage_client.post(
        f"/v1/models/{job['model_id']}/batch_predictions", json={"dataset_id": unlabeled}
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "queued"
    (message,) = pending(sessions)
    assert message.kind == "batch_predict"
    own_redis.start()
    assert relay(outage_client, sessions) == 1
    assert queued_tasks(own_redis, "merge") == [
        ("shardtrain.batch_predict", [created.json()["id"]])
    ]


def test_relay_sends_oldest_first_and_stops_at_the_first_refusal(
    outage_client: TestClient, own_redis: OwnRedis, sessions: sessionmaker[Session]
) -> None:
    own_redis.kill()
    ids = [
        outage_client.post("/v1/datasets", files={"file": (f"{i}.csv", SEED_EXAMPLE_CSV)}).json()[
            "id"
        ]
        for i in range(3)
    ]
    messages = pending(sessions)
    assert [m.args["dataset_id"] for m in messages] == ids
    # Each was tried once when its request committed, and not again by the others.
    assert [m.attempts for m in messages] == [1, 1, 1]
    assert relay(outage_client, sessions) == 0
    assert [m.attempts for m in pending(sessions)] == [2, 1, 1]
    own_redis.start()
    assert relay(outage_client, sessions) == 3
    assert [args[0] for _, args in queued_tasks(own_redis, "ingest")] == ids


def test_a_cuda_job_during_an_outage_is_accepted_since_no_one_can_tell_the_fleet(
    outage_client: TestClient,
    own_redis: OwnRedis,
    sessions: sessionmaker[Session],
    ready_dataset: Callable[[str, bytes], str],
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {
        "dataset_id": dataset_id,
        "target": "label",
        "distribution": {"shards": 1, "device": "cuda"},
    }
    # Redis up and no GPU worker announced in it: refused at once.
    refused = outage_client.post("/v1/jobs", json=body)
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "no_gpu_worker"
    own_redis.kill()
    accepted = outage_client.post("/v1/jobs", json=body)
    assert accepted.status_code == 201, accepted.text
    assert [m.kind for m in pending(sessions)] == ["prepare"]

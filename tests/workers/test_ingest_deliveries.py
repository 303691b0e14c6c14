"""Each ingest delivery is counted before its work; after the last one allowed the
dataset fails as `worker_lost`, and every delivery clears its killed predecessors'
temporary files. What a failed or interrupted ingest wrote is removed."""

import os
import time
from collections.abc import Callable
from pathlib import Path

from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV, iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.datasets.ingest_run import begin_ingest, ingest_dataset, mark_failed, record_ingest
from app.datasets.repository import DatasetRepository
from app.db import session_scope
from app.jobs.watchdog import sweep_datasets
from app.storage import BlobStore
from app.storage.temp_files import TEMP_PREFIX, this_machine
from app.tenancy.scope import SYSTEM

DEAD_PID = 999_999_999


def upload(client: TestClient, data: bytes = SEED_EXAMPLE_CSV) -> str:
    response = client.post("/v1/datasets", files={"file": ("s.csv", data)})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def begin(sessions: sessionmaker[Session], store: BlobStore, dataset_id: str) -> bool:
    with session_scope(sessions) as session:
        return begin_ingest(session, store, dataset_id, max_deliveries=3, grace_s=3600)


def temp_of(store: BlobStore, dataset_id: str, pid: int) -> Path:
    path = store.path(f"datasets/{dataset_id}/{TEMP_PREFIX}data.parquet~{this_machine()}~{pid}~a1")
    path.write_bytes(b"half a parquet file")
    return path


def deliveries(sessions: sessionmaker[Session], dataset_id: str) -> int:
    with session_scope(sessions) as session:
        dataset = DatasetRepository(session, SYSTEM).get(dataset_id)
        assert dataset is not None
        return dataset.ingest_deliveries


def test_the_delivery_after_the_last_allowed_fails_the_dataset_and_clears_its_files(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    dataset_id = upload(client)
    for delivery in (1, 2, 3):
        killed = temp_of(store, dataset_id, DEAD_PID)
        assert begin(sessions, store, dataset_id)
        # Counted and committed before the work, so a killed delivery still counts.
        assert deliveries(sessions, dataset_id) == delivery
        assert not killed.exists()
    killed = temp_of(store, dataset_id, DEAD_PID)
    # A Parquet file an earlier delivery renamed into place before its commit was lost.
    store.put_bytes(f"datasets/{dataset_id}/data.parquet", b"orphan")
    assert not begin(sessions, store, dataset_id)
    dataset = client.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["status"] == "failed"
    assert dataset["error"].startswith("worker_lost: worker lost 3 times while ingesting")
    assert not killed.exists() and not store.exists(f"datasets/{dataset_id}/data.parquet")
    assert store.exists(f"datasets/{dataset_id}/raw")
    # A late redelivery of a failed dataset is not counted, and changes nothing.
    assert not begin(sessions, store, dataset_id)
    assert deliveries(sessions, dataset_id) == 4


def test_a_delivery_leaves_a_live_writers_file_alone(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    dataset_id = upload(client)
    live = temp_of(store, dataset_id, os.getpid())
    assert begin(sessions, store, dataset_id)
    assert live.exists()


def test_a_finished_ingest_is_neither_counted_nor_run_again(
    ready_dataset: Callable[[str, bytes], str], sessions: sessionmaker[Session], store: BlobStore
) -> None:
    dataset_id = ready_dataset("s.csv", SEED_EXAMPLE_CSV)
    assert not begin(sessions, store, dataset_id)
    assert deliveries(sessions, dataset_id) == 0


def test_an_ingest_whose_commit_was_lost_is_recorded_without_reading_the_file_again(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    dataset_id = upload(client)
    session = sessions()
    try:
        outcome = ingest_dataset(session, store, dataset_id)
    finally:
        session.rollback()  # the database restarted before the commit
        session.close()
    assert outcome is not None and outcome.rows == 3
    assert client.get(f"/v1/datasets/{dataset_id}").json()["status"] == "processing"
    # The raw file is gone, so only the kept outcome can make the dataset ready.
    store.delete(f"datasets/{dataset_id}/raw")
    with session_scope(sessions) as session:
        record_ingest(session, store, dataset_id, outcome)
    dataset = client.get(f"/v1/datasets/{dataset_id}").json()
    assert (dataset["status"], dataset["rows"]) == ("ready", 3)
    assert client.get(f"/v1/datasets/{dataset_id}/preview").status_code == 200


def test_a_dataset_failed_after_a_lost_commit_loses_its_parquet(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    dataset_id = upload(client)
    session = sessions()
    try:
        ingest_dataset(session, store, dataset_id)
    finally:
        session.rollback()
        session.close()
    assert store.exists(f"datasets/{dataset_id}/data.parquet")
    with session_scope(sessions) as session:
        mark_failed(session, store, dataset_id, "internal error during ingest: RuntimeError")
    assert client.get(f"/v1/datasets/{dataset_id}").json()["status"] == "failed"
    assert not store.exists(f"datasets/{dataset_id}/data.parquet")


def test_deleting_a_dataset_that_is_not_ready_fails_the_jobs_waiting_for_it(
    client: TestClient, ready_dataset: Callable[[str, bytes], str]
) -> None:
    data = table_to_csv(iris_table())
    processing = upload(client, data)
    waiting = client.post("/v1/jobs", json={"dataset_id": processing, "target": "species"})
    assert waiting.status_code == 201, waiting.text
    assert client.delete(f"/v1/datasets/{processing}").status_code == 200
    job = client.get(f"/v1/jobs/{waiting.json()['id']}").json()
    assert job["status"] == "failed"
    assert job["error"]["code"] == "dataset_deleted"
    assert processing in job["error"]["message"]
    # A queued job on a ready dataset may be reading it any moment: still 409.
    ready = ready_dataset("iris.csv", data)
    queued = client.post("/v1/jobs", json={"dataset_id": ready, "target": "species"})
    refused = client.delete(f"/v1/datasets/{ready}")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "dataset_in_use"
    assert client.get(f"/v1/jobs/{queued.json()['id']}").json()["status"] == "queued"


def test_a_dataset_the_watchdog_gives_up_on_loses_its_orphaned_parquet(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    """The PostgreSQL outage of issue 13: the ingest's Parquet file landed, its commit
    did not, and no later delivery finished; when the watchdog fails the dataset, the
    99 MB file nothing will ever read goes with it."""
    dataset_id = upload(client)
    session = sessions()
    try:
        ingest_dataset(session, store, dataset_id)
    finally:
        session.rollback()
        session.close()
    assert store.exists(f"datasets/{dataset_id}/data.parquet")
    later = time.time()
    for _ in range(3):
        later += 100
        with session_scope(sessions) as session:
            sweep_datasets(session, deadline_s=10, max_attempts=3, now=later, store=store)
    dataset = client.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["status"] == "failed" and dataset["error"].startswith("worker_lost: ")
    assert not store.exists(f"datasets/{dataset_id}/data.parquet")
    assert store.exists(f"datasets/{dataset_id}/raw")


def test_deleting_a_dataset_while_its_ingest_runs_answers_at_once(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore, database_url: str
) -> None:
    """On PostgreSQL an ingest holds its dataset's row for the whole run; a delete meanwhile
    answers 409 dataset_busy at once rather than waiting minutes on the lock. SQLite has
    no row locks: there the delete goes ahead and the ingest's commit is the one refused."""
    dataset_id = upload(client)
    with session_scope(sessions) as ingesting:
        assert DatasetRepository(ingesting, SYSTEM).get(dataset_id, for_update=True) is not None
        if database_url.startswith("postgresql"):
            busy = client.delete(f"/v1/datasets/{dataset_id}")
            assert busy.status_code == 409, busy.text
            assert busy.json()["error"]["code"] == "dataset_busy"
            assert busy.headers["Retry-After"] == "10"
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 200
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 404

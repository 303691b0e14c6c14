"""The watchdog covers datasets and batch predictions as it covers jobs: a lost ingest or
run is sent again, then failed with `worker_lost`; one in progress is left alone."""

import time
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV, iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.datasets.repository import DatasetRepository
from app.db import session_scope
from app.jobs.watchdog import sweep_batch_predictions, sweep_datasets
from app.registry.batch import mark_running, run_batch_prediction
from app.storage import BlobStore
from app.tenancy.scope import SYSTEM


def sweep_datasets_later(sessions: sessionmaker[Session], later: float) -> list[str]:
    """A sweep `later` seconds from now, with a 10 s deadline."""
    with session_scope(sessions) as session:
        return sweep_datasets(session, deadline_s=10, max_attempts=3, now=time.time() + later)


def test_a_lost_ingest_is_sent_again_then_the_dataset_fails(
    client: TestClient, sessions: sessionmaker[Session]
) -> None:
    dataset_id = client.post("/v1/datasets", files={"file": ("s.csv", SEED_EXAMPLE_CSV)}).json()[
        "id"
    ]
    with session_scope(sessions) as session:
        # Within the deadline: waiting, not stalled.
        assert sweep_datasets(session, deadline_s=1000, max_attempts=3) == []
    assert sweep_datasets_later(sessions, 100) == [dataset_id]
    # Each send restarts the deadline.
    assert sweep_datasets_later(sessions, 105) == []
    assert sweep_datasets_later(sessions, 200) == [dataset_id]
    assert sweep_datasets_later(sessions, 300) == []
    dataset = client.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["status"] == "failed"
    assert dataset["error"].startswith("worker_lost: ") and "3 attempt(s)" in dataset["error"]


def test_ready_datasets_are_never_swept(
    ready_dataset: Callable[[str, bytes], str], sessions: sessionmaker[Session]
) -> None:
    ready_dataset("s.csv", SEED_EXAMPLE_CSV)
    assert sweep_datasets_later(sessions, 100) == []


def test_an_ingest_in_progress_holds_its_row_and_is_not_swept(
    client: TestClient, sessions: sessionmaker[Session], database_url: str
) -> None:
    """On PostgreSQL the sweep skips the row an ingest holds; SQLite has no row locks
    (one writer at a time), so there the sweep simply finds the dataset stalled."""
    dataset_id = client.post("/v1/datasets", files={"file": ("s.csv", SEED_EXAMPLE_CSV)}).json()[
        "id"
    ]
    with session_scope(sessions) as ingesting:
        assert DatasetRepository(ingesting, SYSTEM).get(dataset_id, for_update=True) is not None
        if database_url.startswith("postgresql"):
            assert sweep_datasets_later(sessions, 100) == []
    assert sweep_datasets_later(sessions, 100) == [dataset_id]


def test_a_lost_batch_prediction_is_sent_again_then_fails_and_a_resent_run_finishes_once(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    train_job: Callable[..., dict[str, Any]],
    ready_dataset: Callable[[str, bytes], str],
) -> None:
    training = {"local_epochs": 5, "batch_size": 16, "rounds": 3}
    job = train_job("iris.csv", table_to_csv(iris_table()), target="species", training=training)
    unlabeled = ready_dataset("x.csv", table_to_csv(iris_table().drop_columns(["species"])))
    url = f"/v1/models/{job['model_id']}/batch_predictions"
    lost, resent = (client.post(url, json={"dataset_id": unlabeled}).json()["id"] for _ in "ab")

    def sweep_later(later: float) -> list[str]:
        with session_scope(sessions) as session:
            return sweep_batch_predictions(
                session, deadline_s=10, max_attempts=2, now=time.time() + later
            )

    assert sorted(sweep_later(100)) == sorted([lost, resent])
    # The re-sent message runs; a duplicate of it later changes nothing.
    for _ in range(2):
        with session_scope(sessions) as session:
            mark_running(session, resent)
        with session_scope(sessions) as session:
            run_batch_prediction(session, store, resent)
    assert sweep_later(200) == []
    lost_out = client.get(f"{url}/{lost}").json()
    assert lost_out["status"] == "failed" and lost_out["error"].startswith("worker_lost: ")
    resent_out = client.get(f"{url}/{resent}").json()
    assert resent_out["status"] == "succeeded" and resent_out["rows"] == 150

"""A PostgreSQL restart in the middle of an ingest: the ingest task (run in this process,
against a PostgreSQL cluster of the test's own) keeps what it read and records the
dataset `ready` once the database is back, instead of leaving it `processing` forever
beside an orphaned Parquet file."""

import io
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from dbsetup import issue_key, migrate
from fastapi.testclient import TestClient
from own_postgres import OwnPostgres
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

import workers.tasks as tasks
from app.config import Settings, get_settings
from app.datasets.repository import DatasetRepository
from app.db import session_scope
from app.main import create_app
from app.storage.temp_files import TEMP_PREFIX
from app.tenancy.scope import SYSTEM

# Far above the retry's backoff (at most 4 s between tries): only an ingest that no
# longer retries, or one that reads the whole file again, takes longer.
RECOVERY_BOUND_S = 20.0


def csv_of_64_mb() -> bytes:
    rng = np.random.default_rng(1)
    rows = 400_000
    table = pa.table({f"x{i}": rng.normal(size=rows) for i in range(8)})
    out = io.BytesIO()
    pacsv.write_csv(table, out)
    return out.getvalue()


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[OwnPostgres]:
    server = OwnPostgres(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.remove()


def test_an_ingest_records_its_result_once_a_restarted_database_is_back(
    own_postgres: OwnPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = own_postgres.create_database("ingest_outage")
    migrate(database_url)
    settings = Settings(
        database_url=database_url, redis_url=get_settings().broker_url, data_dir=tmp_path / "d"
    )
    # The task reads its settings from the environment, as a worker does.
    monkeypatch.setenv("SHARDTRAIN_DATABASE_URL", database_url)
    monkeypatch.setenv("SHARDTRAIN_DATA_DIR", str(settings.data_dir))
    get_settings.cache_clear()
    tasks._store.cache_clear()
    try:
        headers = {"Authorization": f"Bearer {issue_key(database_url, 'outage')}"}
        with TestClient(create_app(settings), headers=headers) as client:
            created = client.post("/v1/datasets", files={"file": ("big.csv", csv_of_64_mb())})
            assert created.status_code == 201, created.text
        dataset_id = created.json()["id"]
        folder = settings.blob_dir / "datasets" / dataset_id
        failure: list[BaseException] = []

        def run_task() -> None:
            try:
                tasks.ingest_dataset(dataset_id)
            except BaseException as exc:
                failure.append(exc)

        worker = threading.Thread(target=run_task)
        worker.start()
        deadline = time.monotonic() + 60
        while not list(folder.glob(f"{TEMP_PREFIX}data.parquet~*")):
            assert time.monotonic() < deadline and worker.is_alive(), "the ingest never began"
            time.sleep(0.01)
        own_postgres.stop()  # fast shutdown: the ingest's session ends with AdminShutdown
        # The ingest reads on with no database; its Parquet file lands, its commit fails.
        while not (folder / "data.parquet").exists():
            assert time.monotonic() < deadline and worker.is_alive()
            time.sleep(0.05)
        time.sleep(3)
        own_postgres.start()
        back_at = time.monotonic()
        worker.join(timeout=90)
        recovered_s = time.monotonic() - back_at
        assert not worker.is_alive() and not failure, failure
        print(f"ingest recorded {recovered_s:.1f} s after PostgreSQL was back")
        assert recovered_s < RECOVERY_BOUND_S
        engine = create_engine(database_url)
        with session_scope(sessionmaker(engine)) as session:
            dataset = DatasetRepository(session, SYSTEM).get(dataset_id)
            assert dataset is not None
            assert (dataset.status, dataset.rows) == ("ready", 400_000)
            # Recorded from what the one delivery read: not a second delivery, not a retry.
            assert dataset.ingest_deliveries == 1
        engine.dispose()
        assert list(folder.glob(f"{TEMP_PREFIX}*")) == []
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
        tasks._store.cache_clear()

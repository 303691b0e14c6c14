"""PostgreSQL stopped and started again in the middle of an ingest, on the running
system (uvicorn, a prefork worker, beat) with a PostgreSQL cluster and a Redis of the
test's own: the dataset ends `ready` within seconds of the database being back, and no
temporary file is left."""

import time
from pathlib import Path

import httpx
from e2e_system import running_system
from own_postgres import OwnPostgres
from own_redis import OwnRedis
from sqlalchemy import create_engine, select
from test_ingest_kills_e2e import big_csv, temp_files, wait_for_new_writer

from app.tables import Dataset

# Far above the worker's retry backoff (at most 4 s between tries): only an ingest
# left to the watchdog, or one that read the whole file again, takes longer.
RECOVERY_BOUND_S = 30.0


def test_an_ingest_across_a_postgresql_restart_ends_ready(tmp_path: Path) -> None:
    postgres = OwnPostgres(tmp_path / "pg")
    redis_server = OwnRedis(tmp_path / "redis")
    postgres.start()
    redis_server.start()
    try:
        database_url = postgres.create_database("ingest_outage_e2e")
        (tmp_path / "system").mkdir()
        with running_system(tmp_path / "system", redis_server.url, database_url) as system:
            created = system.client.post("/v1/datasets", files={"file": ("big.csv", big_csv())})
            assert created.status_code == 201, created.text
            dataset_id = created.json()["id"]
            folder = system.data_dir / "blobs" / "datasets" / dataset_id
            wait_for_new_writer(folder, set())
            postgres.stop()  # fast shutdown: the ingest's session ends with AdminShutdown
            time.sleep(5)
            postgres.start()
            back_at = time.monotonic()
            while True:
                try:
                    response = system.client.get(f"/v1/datasets/{dataset_id}")
                except httpx.TransportError:
                    response = None
                if (
                    response is not None
                    and response.status_code == 200
                    and response.json()["status"] != "processing"
                ):
                    break
                assert time.monotonic() - back_at < 120, "the dataset stayed processing"
                time.sleep(0.2)
            recovered_s = time.monotonic() - back_at
            print(f"dataset {response.json()['status']} {recovered_s:.1f} s after PostgreSQL")
            assert response.json()["status"] == "ready", response.json()
            assert recovered_s < RECOVERY_BOUND_S
            assert temp_files(folder) == []
            engine = create_engine(database_url)
            with engine.connect() as connection:
                deliveries = connection.scalar(
                    select(Dataset.ingest_deliveries).where(Dataset.id == dataset_id)
                )
            engine.dispose()
            # The delivery that read the file records it once the database answers (within
            # the retry's backoff); the e2e watchdog's 6 s deadline may send one more
            # delivery meanwhile, which finds the dataset done or does it once. No more.
            assert deliveries in (1, 2)
    finally:
        redis_server.kill()
        postgres.remove()

"""The whole system as real processes: uvicorn and a Celery worker (prefork pool)
against the real Redis and a fresh, migrated PostgreSQL database."""

import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import redis
from dbsetup import ROOT, create_postgres_database, drop_postgres_database, migrate
from e2e_system import (
    STAGE_DEADLINE_S,
    Processes,
    System,
    wait_for_worker,
    wait_until_ready,
)

from app.runner import free_local_port

E2E_REDIS_URL = os.environ.get("SHARDTRAIN_E2E_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    name, database_url = create_postgres_database()
    migrate(database_url)
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()
    workdir = tmp_path_factory.mktemp("e2e")
    env = {
        **os.environ,
        "SHARDTRAIN_DATABASE_URL": database_url,
        "SHARDTRAIN_REDIS_URL": E2E_REDIS_URL,
        "SHARDTRAIN_DATA_DIR": str(workdir / "data"),
        # A short deadline so the fault tests see the watchdog act within seconds.
        "SHARDTRAIN_STAGE_DEADLINE_S": str(STAGE_DEADLINE_S),
        "SHARDTRAIN_WATCHDOG_INTERVAL_S": "1",
        "SHARDTRAIN_MAX_ATTEMPTS": "6",
        # Keep-alive comments between the events of every followed stream, as a long
        # job's stream has them.
        "SHARDTRAIN_SSE_PING_S": "0.05",
    }
    # A tenant and key made with the operators' own command.
    admin = [sys.executable, "-m", "app.admin"]
    subprocess.run([*admin, "create-tenant", "e2e"], cwd=ROOT, env=env, check=True)
    api_key = subprocess.run(
        [*admin, "create-key", "--tenant", "e2e"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    processes = Processes(root=ROOT, env=env, workdir=workdir, port=free_local_port())
    processes.start_worker()
    processes.start_beat()
    processes.start_api()
    assert processes.api is not None and processes.worker is not None
    base_url = f"http://127.0.0.1:{processes.port}"
    client = httpx.Client(
        base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        wait_until_ready(client, processes.api, workdir / "api.log")
        wait_for_worker(E2E_REDIS_URL, processes.worker, workdir / "worker.log")
        yield System(
            base_url=base_url,
            client=client,
            worker_log=workdir / "worker.log",
            redis_url=E2E_REDIS_URL,
            data_dir=workdir / "data",
            processes=processes,
        )
    finally:
        client.close()
        processes.stop_all()
        redis.Redis.from_url(E2E_REDIS_URL).flushdb()
        drop_postgres_database(name)

"""The whole system as real processes: uvicorn and a Celery worker (prefork pool)
against the real Redis and a fresh, migrated PostgreSQL database."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis
from dbsetup import ROOT, create_postgres_database, drop_postgres_database, migrate
from e2e_system import System, free_port, wait_until_ready

from app.fleet import WorkerRegistry

E2E_REDIS_URL = os.environ.get("SHARDTRAIN_E2E_REDIS_URL", "redis://127.0.0.1:6379/12")
STAGE_DEADLINE_S = 6


def wait_for_worker(redis_url: str, worker: subprocess.Popen[bytes], log: Path) -> None:
    """Until the worker has announced itself, it may not be consuming yet."""
    registry = WorkerRegistry(redis.Redis.from_url(redis_url))
    deadline = time.monotonic() + 90
    while not registry.online():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the worker did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
    }
    port = free_port()
    worker_log = workdir / "worker.log"
    api_log = workdir / "api.log"
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
            "-Q", "ingest,train,merge", "--pool", "prefork", "--concurrency", "2",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle",
        ],
        cwd=ROOT, env=env, stdout=worker_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    beat_log = workdir / "beat.log"
    beat = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
            "--loglevel", "INFO", "--schedule", str(workdir / "celerybeat-schedule"),
        ],
        cwd=ROOT, env=env, stdout=beat_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    api = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
            "--host", "127.0.0.1", "--port", str(port),
        ],
        cwd=ROOT, env=env, stdout=api_log.open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    client = httpx.Client(base_url=base_url, timeout=30)
    try:
        wait_until_ready(client, api, api_log)
        wait_for_worker(E2E_REDIS_URL, worker, worker_log)
        yield System(
            base_url=base_url,
            client=client,
            worker_log=worker_log,
            redis_url=E2E_REDIS_URL,
            api_pid=api.pid,
            worker_pid=worker.pid,
            data_dir=workdir / "data",
        )
    finally:
        client.close()
        _stop(api)
        _stop(beat)
        _stop(worker)
        redis.Redis.from_url(E2E_REDIS_URL).flushdb()
        drop_postgres_database(name)

"""The whole system as real processes: uvicorn and a Celery worker (prefork pool)
against the real Redis and a fresh, migrated PostgreSQL database."""

import os
from collections.abc import Iterator

import pytest
import redis
from e2e_system import System, running_system

# Set by the session's server choice (tests/session_servers.py).
E2E_REDIS_URL = os.environ["SHARDTRAIN_E2E_REDIS_URL"]


@pytest.fixture(scope="session")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    redis.Redis.from_url(E2E_REDIS_URL).flushdb()
    try:
        with running_system(tmp_path_factory.mktemp("e2e"), E2E_REDIS_URL) as started:
            yield started
    finally:
        redis.Redis.from_url(E2E_REDIS_URL).flushdb()

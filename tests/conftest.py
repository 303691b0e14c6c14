"""Shared fixtures: real PostgreSQL and SQLite databases built by `alembic upgrade head`,
a real Redis (a database number of its own), and the app wired to them."""

import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# Settings are read once per process: point them at test resources before any import.
_TEST_DATA_DIR = tempfile.mkdtemp(prefix="shardtrain-test-")
os.environ["SHARDTRAIN_DATA_DIR"] = _TEST_DATA_DIR

from session_servers import provide  # noqa: E402

provide("redis://127.0.0.1:6379/11", "redis://127.0.0.1:6379/12")

import pytest  # noqa: E402
import redis  # noqa: E402
from dbsetup import (  # noqa: E402
    create_postgres_database,
    drop_postgres_database,
    issue_key,
    migrate,
)
from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import Engine, create_engine, text  # noqa: E402
from sqlalchemy.orm import Session, sessionmaker  # noqa: E402

from app.config import Settings  # noqa: E402
from app.datasets.service import ingest_dataset  # noqa: E402
from app.db import session_scope  # noqa: E402
from app.main import create_app  # noqa: E402
from app.paramstore import ParamStore  # noqa: E402
from app.storage import BlobStore, LocalBlobStore  # noqa: E402
from app.tables import Base  # noqa: E402

REDIS_URL = os.environ["SHARDTRAIN_REDIS_URL"]


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    name, url = create_postgres_database()
    migrate(url)
    yield url
    drop_postgres_database(name)


@pytest.fixture(scope="session")
def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'shardtrain.db'}"
    migrate(url)
    return url


@pytest.fixture(scope="session", params=["postgres", "sqlite"])
def database_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue(f"{request.param}_url"))


def _truncate(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(text(f"DELETE FROM {table.name}"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Iterator[Settings]:
    engine = create_engine(database_url)
    _truncate(engine)
    yield Settings(database_url=database_url, redis_url=REDIS_URL, data_dir=tmp_path / "data")
    engine.dispose()


@pytest.fixture
def api_key(settings: Settings) -> str:
    return issue_key(settings.database_url, "tests")


@pytest.fixture
def client(settings: Settings, api_key: str) -> Iterator[TestClient]:
    headers = {"Authorization": f"Bearer {api_key}"}
    app = create_app(settings)
    with TestClient(app, raise_server_exceptions=False, headers=headers) as test_client:
        yield test_client


@pytest.fixture
def sessions(settings: Settings) -> sessionmaker[Session]:
    return sessionmaker(create_engine(settings.database_url), expire_on_commit=False)


@pytest.fixture
def store(settings: Settings) -> BlobStore:
    return LocalBlobStore(settings.blob_dir)


@pytest.fixture(scope="session")
def redis_client() -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    yield client
    client.flushdb()


@pytest.fixture
def params(redis_client: redis.Redis) -> ParamStore:
    return ParamStore(redis_client, chunk_bytes=1024, ttl_s=600)


@pytest.fixture
def ready_dataset(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore
) -> Callable[[str, bytes], str]:
    """Upload through the API, then run the worker's ingest step in-process."""

    def make(name: str, data: bytes) -> str:
        response = client.post("/v1/datasets", files={"file": (name, data)})
        assert response.status_code == 201, response.text
        dataset_id: str = response.json()["id"]
        with session_scope(sessions) as session:
            ingest_dataset(session, store, dataset_id)
        return dataset_id

    return make


@pytest.fixture
def train_job(
    client: TestClient,
    ready_dataset: Callable[[str, bytes], str],
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> Callable[..., dict[str, Any]]:
    """Upload through the API, post a job, run its stages in-process; the job as read back."""
    from inprocess import run_job

    def make(name: str, data: bytes, **spec: object) -> dict[str, Any]:
        dataset_id = ready_dataset(name, data)
        response = client.post("/v1/jobs", json={"dataset_id": dataset_id, **spec})
        assert response.status_code == 201, response.text
        run_job(sessions, store, params, response.json()["id"])
        return dict(client.get(f"/v1/jobs/{response.json()['id']}").json())

    return make


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every job whose shards were written from the dataset: its preparations (a job on
    another's shards, `jobs.shards_from`, writes none)."""
    from app.jobs import sharding

    written: list[str] = []
    real = sharding.build_shards

    def counted(*args: Any, **kwargs: Any) -> Any:
        written.append(kwargs["job_id"])
        return real(*args, **kwargs)

    monkeypatch.setattr("app.jobs.stages.prepare.build_shards", counted)
    return written


@pytest.fixture
def seed_model_job(train_job: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """A succeeded job on the seed example, with a deployed model, in seconds."""
    from sample_data import SEED_EXAMPLE_CSV

    job = train_job(
        "seed.csv",
        SEED_EXAMPLE_CSV,
        target="label",
        distribution={"shards": 1},
        validation={"holdout_fraction": 0.0, "validation_fraction": 0.0},
        training={"rounds": 2},
        deploy_if=None,
    )
    assert job["status"] == "succeeded", job
    return job

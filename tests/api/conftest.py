from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.datasets.service import ingest_dataset
from app.db import session_scope
from app.storage import BlobStore


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

"""Fixtures the worker-stage tests share."""

from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs.stages import prepare
from app.paramstore import ParamStore
from app.storage import BlobStore

MakeDataset = Callable[[str, bytes], str]


@pytest.fixture
def started_job(
    client: TestClient,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
) -> Callable[..., str]:
    """A job on iris, prepared: its shards written and round 1 awaited."""

    def make(**spec: object) -> str:
        dataset_id = ready_dataset("iris.csv", table_to_csv(iris_table()))
        body = {"dataset_id": dataset_id, "target": "species", **spec}
        job_id: str = client.post("/v1/jobs", json=body).json()["id"]
        with session_scope(sessions) as session:
            assert prepare.begin_prepare(session, job_id) == "build"
        with session_scope(sessions) as session:
            assert prepare.build_job_shards(session, store, params, job_id).next == "round"
        return job_id

    return make

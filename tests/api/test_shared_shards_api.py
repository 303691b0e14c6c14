"""A job on another job's prepared shards (`jobs.shards_from`, what a sweep's trials
share, issue 20): no second preparation of the data, and exactly the model it would
have trained on shards of its own."""

from collections.abc import Callable
from typing import Any

import pytest
import torch
from fastapi.testclient import TestClient
from inprocess import run_job
from sample_data import breast_cancer_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs.repository import JobRepository
from app.paramstore import ParamStore
from app.registry.artifact import read_artifact
from app.storage import BlobStore, keys
from app.tenancy.scope import SYSTEM

DATA = table_to_csv(breast_cancer_table())
BASE: dict[str, Any] = {
    "target": "diagnosis",
    "distribution": {"shards": 2},
    "training": {"rounds": 3, "learning_rate": 0.05, "seed": 7},
}
MLP = {**BASE, "model": {"type": "mlp", "hidden_layers": [8]}}
TREES = {
    "target": "diagnosis",
    "distribution": {"shards": 2},
    "training": {"seed": 7},
    "model": {"type": "gradient_boosted_trees", "n_trees": 3, "max_depth": 3},
}


def _job(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    dataset_id: str,
    spec: dict[str, Any],
    shards_from: str | None = None,
) -> dict[str, Any]:
    created = client.post("/v1/jobs", json={**spec, "dataset_id": dataset_id})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    if shards_from is not None:
        with session_scope(sessions) as session:
            job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
            assert job is not None
            job.shards_from = shards_from
    run_job(sessions, store, params, job_id)
    return dict(client.get(f"/v1/jobs/{job_id}").json())


def _state(store: BlobStore, job: dict[str, Any]) -> dict[str, torch.Tensor]:
    assert job["status"] == "succeeded", job
    return read_artifact(store.path(keys.model_artifact(job["model_id"]))).state


SHALLOWER = {
    **TREES,
    "model": {"type": "gradient_boosted_trees", "n_trees": 4, "max_depth": 2, "learning_rate": 0.3},
}


@pytest.mark.parametrize(("first", "second"), [(BASE, MLP), (TREES, SHALLOWER)])
def test_a_job_on_shared_shards_trains_what_its_own_shards_would_have(
    client: TestClient,
    ready_dataset: Callable[[str, bytes], str],
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    builds: list[str],
    first: dict[str, Any],
    second: dict[str, Any],
) -> None:
    dataset_id = ready_dataset("cancer.csv", DATA)
    source = _job(client, sessions, store, params, dataset_id, first)
    shared = _job(client, sessions, store, params, dataset_id, second, shards_from=source["id"])
    assert builds == [source["id"]]
    own = _job(client, sessions, store, params, dataset_id, second)
    assert builds == [source["id"], own["id"]]
    ours, theirs = _state(store, shared), _state(store, own)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    assert shared["metrics"] == own["metrics"]

    assert client.delete(f"/v1/models/{source['model_id']}").status_code == 200
    refused = client.delete(f"/v1/jobs/{source['id']}")
    assert refused.status_code == 409, refused.text
    assert refused.json()["error"]["code"] == "job_shards_in_use"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"distribution": {"shards": 3}}, "distribution.shards"),
        ({"training": {"rounds": 3, "seed": 8}}, "training.seed"),
        ({"preprocessing": {"standardize": False}}, "preprocessing"),
        ({"model": {"type": "gradient_boosted_trees"}, "training": {"seed": 7}}, "model.type"),
    ],
)
def test_a_job_whose_shards_would_differ_fails_naming_the_field(
    client: TestClient,
    ready_dataset: Callable[[str, bytes], str],
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    change: dict[str, Any],
    field: str,
) -> None:
    dataset_id = ready_dataset("cancer.csv", DATA)
    source = _job(client, sessions, store, params, dataset_id, BASE)
    failed = _job(
        client, sessions, store, params, dataset_id, {**BASE, **change}, shards_from=source["id"]
    )
    assert failed["status"] == "failed", failed
    assert failed["error"]["code"] == "invalid_spec"
    assert failed["error"]["message"].startswith(f"{field} differs from job {source['id']}")

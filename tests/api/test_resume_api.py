"""POST /v1/jobs/{id}/resume: a failed or cancelled job continues from the checkpoint
of its last merged round with the same shards and seeds, and ends with the model an
uninterrupted run trains, bit for bit."""

import time
from collections.abc import Callable
from typing import Any

import pytest
import torch
from dbsetup import issue_key
from fastapi.testclient import TestClient
from inprocess import continue_job, run_job
from sample_data import breast_cancer_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_scope
from app.jobs.lifecycle import fail
from app.jobs.repository import JobRepository
from app.jobs.watchdog import sweep
from app.paramstore import ParamStore
from app.registry.artifact import read_artifact
from app.storage import BlobStore, keys
from app.tenancy.scope import SYSTEM

DATA = table_to_csv(breast_cancer_table())
SPEC: dict[str, Any] = {
    "target": "diagnosis",
    "model": {"type": "mlp", "hidden_layers": [16], "dropout": 0.1},
    "distribution": {"shards": 3},
    "training": {"rounds": 5, "learning_rate": 0.05, "seed": 11},
}


@pytest.fixture
def start_job(client: TestClient, ready_dataset: Callable[[str, bytes], str]) -> Callable[[], str]:
    dataset_id = ready_dataset("cancer.csv", DATA)

    def start() -> str:
        created = client.post("/v1/jobs", json={**SPEC, "dataset_id": dataset_id})
        assert created.status_code == 201, created.text
        return str(created.json()["id"])

    return start


def _model_state(client: TestClient, store: BlobStore, job_id: str) -> dict[str, torch.Tensor]:
    job = client.get(f"/v1/jobs/{job_id}").json()
    assert job["status"] == "succeeded", job
    return read_artifact(store.path(keys.model_artifact(job["model_id"]))).state


@pytest.mark.parametrize("stopped", ["failed", "cancelled"])
def test_a_resumed_job_trains_the_uninterrupted_model_bit_for_bit(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    start_job: Callable[[], str],
    stopped: str,
) -> None:
    whole = start_job()
    run_job(sessions, store, params, whole)

    interrupted = start_job()
    run_job(sessions, store, params, interrupted, stop_before_round=3)
    if stopped == "failed":
        with session_scope(sessions) as session:
            job = JobRepository(session, SYSTEM).get(interrupted, for_update=True)
            assert job is not None
            fail(job, "worker_lost", "no progress on stage 'round' after 3 attempt(s)")
    else:
        assert client.post(f"/v1/jobs/{interrupted}/cancel").status_code == 200
    # The shard results of the lost round, from a worker that died before the merge.
    params.delete_job(interrupted)

    resumed = client.post(f"/v1/jobs/{interrupted}/resume")
    assert resumed.status_code == 200, resumed.text
    body = resumed.json()
    assert (body["status"], body["error"], body["finished_at"]) == ("running", None, None)
    assert body["progress"]["round"] == 2
    again = client.post(f"/v1/jobs/{interrupted}/resume")  # a retry: changes nothing
    assert (again.status_code, again.json()["status"]) == (200, "running")
    continue_job(sessions, store, params, interrupted)

    ours, theirs = _model_state(client, store, interrupted), _model_state(client, store, whole)
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    metrics = [client.get(f"/v1/jobs/{j}").json()["metrics"] for j in (interrupted, whole)]
    assert metrics[0] == metrics[1]
    rounds = client.get(f"/v1/jobs/{interrupted}/metrics").json()["data"]
    assert [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
    events = client.get(f"/v1/jobs/{interrupted}/events?limit=200").json()["data"]
    resumed_events = [e for e in events if e["type"] == "job.resumed"]
    assert len(resumed_events) == 1 and resumed_events[0]["data"]["previous"] == stopped


def test_a_job_that_failed_in_finalize_finalizes_again(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    start_job: Callable[[], str],
) -> None:
    job_id = start_job()
    run_job(sessions, store, params, job_id, stop_before="finalize")
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
        assert job is not None and job.stage == "finalize"
        fail(job, "finalize_failed", "the artifact store was unreachable")
    assert client.post(f"/v1/jobs/{job_id}/resume").status_code == 200
    continue_job(sessions, store, params, job_id)
    assert client.get(f"/v1/jobs/{job_id}").json()["model_id"] is not None


def test_what_cannot_be_resumed_is_a_409_saying_why(
    client: TestClient,
    settings: Settings,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    start_job: Callable[[], str],
) -> None:
    done = start_job()
    run_job(sessions, store, params, done)
    queued = start_job()
    lost = start_job()
    run_job(sessions, store, params, lost, stop_before_round=2)
    with session_scope(sessions) as session:
        for job_id in (queued, lost):
            job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
            assert job is not None
            fail(job, "worker_lost", "gone")
    store.delete(keys.job_checkpoint(lost, 1))

    refusals = {
        done: "it is succeeded",
        queued: "before its shards were written",
        lost: "the checkpoint of round 1 is gone",
    }
    for job_id, why in refusals.items():
        response = client.post(f"/v1/jobs/{job_id}/resume")
        assert response.status_code == 409, response.text
        assert response.json()["error"]["code"] == "job_not_resumable"
        assert why in response.json()["error"]["message"]
    assert client.post("/v1/jobs/job_0123456789abcdef01234567/resume").status_code == 404
    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'outsiders')}"}
    assert client.post(f"/v1/jobs/{lost}/resume", headers=other).status_code == 404


def test_a_resumed_stage_has_a_full_retry_budget(
    client: TestClient,
    sessions: sessionmaker[Session],
    store: BlobStore,
    params: ParamStore,
    start_job: Callable[[], str],
) -> None:
    """It failed because its attempts ran out; resumed, the watchdog sends it again
    rather than failing it at the first stall, with task ids no cancel revoked."""
    job_id = start_job()
    run_job(sessions, store, params, job_id, stop_before_round=2)
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id, for_update=True)
        assert job is not None
        job.stage_attempts = 2
        fail(job, "worker_lost", "no progress on stage 'round' after 3 attempt(s)")
    assert client.post(f"/v1/jobs/{job_id}/resume").status_code == 200
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None and (job.stage_attempts, job.attempt_base) == (3, 3)
    later = time.time() + 3600
    with session_scope(sessions) as session:
        resent = sweep(session, deadline_s=60, max_attempts=3, now=later)
    assert [j for j, _ in resent] == [job_id]
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "running"

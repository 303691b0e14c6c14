"""Events, cancel and the watchdog, on the real stages and databases."""

import json
import time
from collections.abc import Callable

from fastapi.testclient import TestClient
from sample_data import iris_table, table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.jobs.repository import JobRepository
from app.jobs.stages import finalize, merge, next_step, prepare, train
from app.jobs.watchdog import sweep
from app.paramstore import ParamStore
from app.storage import BlobStore
from app.tables import Job
from app.tenancy.scope import SYSTEM

MakeDataset = Callable[[str, bytes], str]


def create_job(client: TestClient, dataset_id: str, **spec: object) -> str:
    body = {"dataset_id": dataset_id, "target": "species", **spec}
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def start(
    sessions: sessionmaker[Session], store: BlobStore, params: ParamStore, job_id: str
) -> None:
    with session_scope(sessions) as session:
        prepare.begin_prepare(session, job_id)
    with session_scope(sessions) as session:
        prepare.build_job_shards(session, store, params, job_id)


def load(sessions: sessionmaker[Session], job_id: str) -> Job:
    with session_scope(sessions) as session:
        job = JobRepository(session, SYSTEM).get(job_id)
        assert job is not None
        return job


def event_types(client: TestClient, job_id: str) -> list[str]:
    body = client.get(f"/v1/jobs/{job_id}/events", params={"limit": 1000}).json()
    return [e["type"] for e in body["data"]]


def test_a_run_leaves_a_complete_event_log(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store, params
) -> None:
    from inprocess import run_job

    job_id = create_job(
        client, ready_dataset("iris.csv", table_to_csv(iris_table())), training={"rounds": 2}
    )
    run_job(sessions, store, params, job_id)
    types = event_types(client, job_id)
    assert types == [
        "job.created",
        "job.status",  # queued -> preparing
        "job.status",  # preparing -> running
        "round.started",
        "round.completed",
        "round.started",
        "round.completed",
        "job.status",  # running -> succeeded
    ]
    events = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    assert all(e["id"].startswith("evt_") and e["object"] == "job.event" for e in events)
    assert events[-1]["data"] == {"previous": "running", "status": "succeeded"}
    page = client.get(f"/v1/jobs/{job_id}/events", params={"limit": 3}).json()
    assert page["has_more"] is True
    rest = client.get(f"/v1/jobs/{job_id}/events", params={"after": page["data"][-1]["id"]}).json()
    assert [e["id"] for e in page["data"] + rest["data"]] == [e["id"] for e in events]
    rounds_out = client.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    assert all(r["slowest_shard_seconds"] <= r["seconds"] for r in rounds_out)
    assert all(r["slowest_shard_seconds"] > 0 for r in rounds_out)


def test_events_stream_as_server_sent_events_until_the_job_ends(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store, params
) -> None:
    from inprocess import run_job

    job_id = create_job(
        client, ready_dataset("iris.csv", table_to_csv(iris_table())), training={"rounds": 1}
    )
    run_job(sessions, store, params, job_id)
    with client.stream(
        "GET", f"/v1/jobs/{job_id}/events", headers={"accept": "text/event-stream"}
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = response.read().decode()
    names = [
        line.removeprefix("event: ").strip()
        for line in text.splitlines()
        if line.startswith("event:")
    ]
    assert names == event_types(client, job_id)
    data = [
        json.loads(line.removeprefix("data: "))
        for line in text.splitlines()
        if line.startswith("data:")
    ]
    assert data[-1]["data"]["status"] == "succeeded"


def test_cancel_a_queued_job_at_once_and_idempotently(
    client: TestClient, ready_dataset: MakeDataset
) -> None:
    job_id = create_job(client, ready_dataset("iris.csv", table_to_csv(iris_table())))
    first = client.post(f"/v1/jobs/{job_id}/cancel")
    assert first.status_code == 200
    assert first.json()["status"] == "cancelled"
    assert first.json()["finished_at"] is not None
    again = client.post(f"/v1/jobs/{job_id}/cancel")
    assert again.status_code == 200 and again.json() == first.json()
    assert event_types(client, job_id) == ["job.created", "job.status"]


def test_cancel_a_running_job_stops_it_without_a_model(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store, params
) -> None:
    job_id = create_job(client, ready_dataset("iris.csv", table_to_csv(iris_table())))
    start(sessions, store, params, job_id)
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    # The round's messages, delivered anyway, change nothing.
    for shard in range(4):
        with session_scope(sessions) as session:
            train.train_shard(session, store, params, job_id, 1, shard)
    assert params.get_shard(job_id, 1, 0) is None
    with session_scope(sessions) as session:
        assert merge.merge_round(session, store, params, job_id, 1).next == "none"
    with session_scope(sessions) as session:
        assert finalize.finalize_job(session, store, job_id) is False
    assert client.get("/v1/models", params={"job_id": job_id}).json()["data"] == []
    assert load(sessions, job_id).status == "cancelled"


def test_cancelling_a_finished_job_is_409(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store, params
) -> None:
    from inprocess import run_job

    job_id = create_job(
        client, ready_dataset("iris.csv", table_to_csv(iris_table())), training={"rounds": 1}
    )
    run_job(sessions, store, params, job_id)
    response = client.post(f"/v1/jobs/{job_id}/cancel")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "job_finished"


def test_watchdog_resends_a_stalled_round_then_gives_up(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store, params
) -> None:
    job_id = create_job(client, ready_dataset("iris.csv", table_to_csv(iris_table())))
    start(sessions, store, params, job_id)
    later = time.time() + 100
    with session_scope(sessions) as session:
        assert sweep(session, deadline_s=1000, max_attempts=3, now=later) == []
    with session_scope(sessions) as session:
        decisions = sweep(session, deadline_s=10, max_attempts=3, now=later)
    ((stalled_id, step),) = decisions
    assert stalled_id == job_id
    assert isinstance(step, next_step.NextStep)
    assert (step.next, step.round, step.shards, step.attempt) == ("round", 1, 4, 1)
    job = load(sessions, job_id)
    assert job.stage_attempts == 1 and job.status == "running"
    with session_scope(sessions) as session:
        (again,) = sweep(session, deadline_s=10, max_attempts=3, now=time.time() + 100)
    assert isinstance(again[1], next_step.NextStep) and again[1].attempt == 2
    with session_scope(sessions) as session:
        assert sweep(session, deadline_s=10, max_attempts=3, now=time.time() + 100) == []
    job = load(sessions, job_id)
    assert job.status == "failed" and job.error_code == "worker_lost"
    types = event_types(client, job_id)
    assert types.count("watchdog.resent") == 2 and types[-1] == "job.status"


def test_watchdog_leaves_jobs_waiting_for_ingest_alone(client: TestClient) -> None:  # type: ignore[no-untyped-def]
    from sample_data import SEED_EXAMPLE_CSV

    dataset_id = client.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)}).json()[
        "id"
    ]
    job_id = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "label"}).json()[
        "id"
    ]
    app_sessions = client.app.state.session_factory  # type: ignore[attr-defined]
    with session_scope(app_sessions) as session:
        assert sweep(session, deadline_s=1, max_attempts=1, now=time.time() + 100) == []
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "queued"


def test_a_worker_cannot_overwrite_a_cancel_it_never_saw_on_sqlite(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store, params, database_url: str
) -> None:
    """SQLite ignores SELECT … FOR UPDATE; the job's version column catches the race."""
    import pytest
    from sqlalchemy.orm.exc import StaleDataError

    job_id = create_job(client, ready_dataset("iris.csv", table_to_csv(iris_table())))
    start(sessions, store, params, job_id)
    before = load(sessions, job_id).version
    if not database_url.startswith("sqlite"):
        # PostgreSQL's row lock would make a racing cancel wait for the worker instead;
        # the version still moves with every write.
        client.post(f"/v1/jobs/{job_id}/cancel")
        assert load(sessions, job_id).version == before + 1
        return
    worker = sessions()
    job = JobRepository(worker, SYSTEM).get(job_id, for_update=True)
    assert job is not None and job.status == "running"
    assert client.post(f"/v1/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    job.current_round = 1  # what a merge that read the job before the cancel would write
    with pytest.raises(StaleDataError):
        worker.commit()
    worker.close()
    assert load(sessions, job_id).status == "cancelled"


def test_event_stream_resumes_after_last_event_id(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset: MakeDataset, sessions, store, params
) -> None:
    from inprocess import run_job

    job_id = create_job(
        client, ready_dataset("iris.csv", table_to_csv(iris_table())), training={"rounds": 1}
    )
    run_job(sessions, store, params, job_id)
    events = client.get(f"/v1/jobs/{job_id}/events").json()["data"]
    headers = {"accept": "text/event-stream", "last-event-id": events[2]["id"]}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        text = response.read().decode()
    ids = [
        line.removeprefix("id: ").strip() for line in text.splitlines() if line.startswith("id:")
    ]
    assert ids == [e["id"] for e in events[3:]]

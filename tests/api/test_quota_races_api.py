"""Quotas hold under concurrent requests: the count and the insert it admits happen
under one tenant lock, on PostgreSQL and on SQLite alike."""

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis
from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_factory, session_scope
from app.tables import Dataset, Job
from app.tenancy.service import set_limit

MakeDataset = Callable[[str, bytes], str]
UPLOAD_BYTES = 4690


def limit(settings: Settings, name: str, value: int) -> None:
    with session_scope(session_factory(settings.database_url)) as session:
        set_limit(session, "tests", name, value)


@pytest.fixture(autouse=True)
def fresh_windows(redis_client: redis.Redis) -> None:
    for key in redis_client.scan_iter("shardtrain:rate:*"):
        redis_client.delete(key)


def all_at_once(requests: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Send every request from its own thread, released together. TestClient hands each
    to the app's one event loop, and the sync parts run in its thread pool, so the
    requests really overlap inside the app."""
    start = threading.Barrier(len(requests))

    def send(request: Callable[[], httpx.Response]) -> httpx.Response:
        start.wait()
        return request()

    with ThreadPoolExecutor(len(requests)) as pool:
        return list(pool.map(send, requests))


def csv_of(size: int, tag: int) -> bytes:
    header = b"x1,x2,label\n"
    row = f"{tag},{tag + 1},1\n".encode()
    body = header + row * ((size - len(header)) // len(row))
    return body + b"#" * (size - len(body) - 1) + b"\n"


def test_concurrent_job_posts_admit_exactly_max_running_jobs(
    client: TestClient,
    settings: Settings,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    limit(settings, "max_running_jobs", 2)
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}

    responses = all_at_once([lambda: client.post("/v1/jobs", json=body) for _ in range(10)])

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 2 + [429] * 8, [r.text for r in responses]
    for refused in (r for r in responses if r.status_code == 429):
        error = refused.json()["error"]
        assert error["code"] == "quota_exceeded" and "max_running_jobs" in error["message"]
    with sessions() as session:
        stored = session.scalars(select(Job.id)).all()
    assert sorted(stored) == sorted(r.json()["id"] for r in responses if r.status_code == 201)


def test_concurrent_reruns_admit_only_the_room_left(
    client: TestClient,
    settings: Settings,
    ready_dataset: MakeDataset,
    sessions: sessionmaker[Session],
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    first = client.post("/v1/jobs", json=body)
    assert first.status_code == 201
    limit(settings, "max_running_jobs", 3)
    rerun = f"/v1/jobs/{first.json()['id']}/rerun"

    responses = all_at_once([lambda: client.post(rerun) for _ in range(6)])

    assert sorted(r.status_code for r in responses) == [201] * 2 + [429] * 4
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 3


def test_concurrent_uploads_store_only_what_fits_and_no_blob_of_the_rest(
    client: TestClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    limit(settings, "max_stored_bytes", 20000)
    # Five at once, past the default max_concurrent_uploads: the race is the quota's.
    limit(settings, "max_concurrent_uploads", 5)
    files = [csv_of(UPLOAD_BYTES, tag) for tag in range(5)]
    assert {len(f) for f in files} == {UPLOAD_BYTES}

    def upload(data: bytes) -> Callable[[], httpx.Response]:
        return lambda: client.post("/v1/datasets", files={"file": ("part.csv", data)})

    responses = all_at_once([upload(f) for f in files])

    # 4 * 4690 = 18760 fits in 20000; a fifth would make 23450.
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * 4 + [409], [r.text for r in responses]
    refused = next(r for r in responses if r.status_code == 409).json()["error"]
    assert refused["code"] == "quota_exceeded" and refused["param"] == "file"
    assert "max_stored_bytes" in refused["message"]
    created = {r.json()["id"] for r in responses if r.status_code == 201}
    with sessions() as session:
        assert set(session.scalars(select(Dataset.id)).all()) == created
        total = session.scalar(select(func.sum(Dataset.bytes)))
    assert total == 4 * UPLOAD_BYTES
    assert {p.name for p in (settings.blob_dir / "datasets").iterdir()} == created

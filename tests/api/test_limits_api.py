"""Per-tenant quotas and Redis-backed rate limits."""

import uuid
from collections.abc import Callable

import pytest
import redis
from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV

from app.config import Settings
from app.db import session_factory, session_scope
from app.tenancy.service import set_limit

MakeDataset = Callable[[str, bytes], str]


def limit(settings: Settings, name: str, value: int) -> None:
    with session_scope(session_factory(settings.database_url)) as session:
        set_limit(session, "tests", name, value)


@pytest.fixture(autouse=True)
def fresh_windows(redis_client: redis.Redis) -> None:
    for key in redis_client.scan_iter("shardtrain:rate:*"):
        redis_client.delete(key)


def test_unfinished_jobs_quota_is_429_naming_the_limit(
    client: TestClient, settings: Settings, ready_dataset: MakeDataset
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    limit(settings, "max_running_jobs", 1)
    body = {"dataset_id": dataset_id, "target": "label", "distribution": {"shards": 1}}
    assert client.post("/v1/jobs", json=body).status_code == 201
    response = client.post("/v1/jobs", json=body)
    assert response.status_code == 429
    error = response.json()["error"]
    assert error["code"] == "quota_exceeded" and "max_running_jobs" in error["message"]


@pytest.mark.parametrize(
    ("name", "patch", "param"),
    [
        ("max_shards", {"distribution": {"shards": 3}}, "distribution.shards"),
        ("max_rounds", {"training": {"rounds": 3}}, "training.rounds"),
    ],
)
def test_shard_and_round_maxima_name_the_field_and_the_limit(  # type: ignore[no-untyped-def]
    client: TestClient, settings: Settings, ready_dataset: MakeDataset, name, patch, param
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    limit(settings, name, 2)
    response = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "label", **patch})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["param"] == param and name in error["message"]


def test_storage_quota_stops_an_upload_and_keeps_no_blob(
    client: TestClient, settings: Settings
) -> None:
    limit(settings, "max_stored_bytes", len(SEED_EXAMPLE_CSV) + 10)
    files = {"file": ("seed.csv", SEED_EXAMPLE_CSV)}
    assert client.post("/v1/datasets", files=files).status_code == 201
    response = client.post("/v1/datasets", files=files)
    assert response.status_code == 409
    assert "max_stored_bytes" in response.json()["error"]["message"]
    assert len(list((settings.blob_dir / "datasets").iterdir())) == 1


def test_upload_rate_limit_is_429_with_retry_after(client: TestClient, settings: Settings) -> None:
    limit(settings, "upload_per_minute", 2)
    files = {"file": ("seed.csv", SEED_EXAMPLE_CSV)}
    statuses = [client.post("/v1/datasets", files=files).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    response = client.post("/v1/datasets", files=files)
    assert 1 <= int(response.headers["Retry-After"]) <= 61
    assert response.json()["error"]["code"] == "rate_limited"


def test_unknown_limit_name_is_refused(settings: Settings) -> None:
    from app.tenancy.service import TenancyError

    with pytest.raises(TenancyError, match="unknown limit"):
        limit(settings, "max_everything", 5)


def test_predict_rate_limit_counts_every_call(client: TestClient, settings: Settings) -> None:
    limit(settings, "predict_per_minute", 1)
    body = {"inputs": [{"x1": 1}]}
    assert client.post("/v1/models/mdl_none/predict", json=body).status_code == 404
    second = client.post("/v1/models/mdl_none/predict", json=body)
    assert second.status_code == 429 and "Retry-After" in second.headers


def test_rate_limiter_fails_open_when_redis_is_down(
    redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    from app.errors import APIError
    from app.tenancy.limits import RateLimiter

    # The same calls against a Redis that answers are refused: the limiter counts.
    counting = RateLimiter(redis_client)
    tenant = f"ten_{uuid.uuid4().hex[:8]}"
    counting.hit(tenant, "predict", per_minute=1)
    with pytest.raises(APIError) as refused:
        counting.hit(tenant, "predict", per_minute=1)
    assert (refused.value.status_code, refused.value.code) == (429, "rate_limited")

    unreachable = RateLimiter(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_timeout=1))
    with caplog.at_level("WARNING", logger="app.tenancy.limits"):
        for _ in range(3):
            unreachable.hit(tenant, "predict", per_minute=1)
    uncounted = [r for r in caplog.records if "rate limiter unavailable" in r.getMessage()]
    assert len(uncounted) == 3

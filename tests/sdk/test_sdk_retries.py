"""Retries against the real app behind a FaultInjector: the retry happens, every attempt
carries the same Idempotency-Key, and exactly one object is made."""

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from fault_injection import Fault, FaultInjector
from sample_data import SEED_EXAMPLE_CSV
from sdk_harness import FAST, Served

from app.config import Settings
from app.main import create_app
from shardtrain import AsyncClient, NotFoundError, RateLimitError, ServerError


@pytest.fixture
def seed_csv(tmp_path: Path) -> Path:
    path = tmp_path / "seed.csv"
    path.write_bytes(SEED_EXAMPLE_CSV)
    return path


def test_upload_retries_503s_with_one_key(served: Served, seed_csv: Path) -> None:
    served.injector.faults.append(Fault("POST", "/v1/datasets", 503, times=2))
    dataset = served.sdk.datasets.upload(seed_csv)
    attempts = served.injector.requests("POST", "/v1/datasets")
    assert [a.answered for a in attempts] == [503, 503, 201]
    keys = {a.idempotency_key for a in attempts}
    assert len(keys) == 1 and None not in keys
    assert [d.id for d in served.sdk.datasets.list()] == [dataset.id]
    assert dataset.bytes == len(SEED_EXAMPLE_CSV)


def test_lost_responses_never_duplicate_the_upload(served: Served, seed_csv: Path) -> None:
    # The app stores the dataset each time but the answer is lost twice: the retries
    # must get back the first dataset, not make two more.
    served.injector.faults.append(Fault("POST", "/v1/datasets", 502, times=2, when="after"))
    dataset = served.sdk.datasets.upload(seed_csv)
    attempts = served.injector.requests("POST", "/v1/datasets")
    assert [a.answered for a in attempts] == [502, 502, 201]
    assert len({a.idempotency_key for a in attempts}) == 1
    assert [d.id for d in served.sdk.datasets.list()] == [dataset.id]


def test_job_create_honours_retry_after_and_makes_one_job(served: Served, seed_csv: Path) -> None:
    dataset = served.sdk.datasets.upload(seed_csv)
    served.injector.faults.append(Fault("POST", "/v1/jobs", 429, times=1, retry_after="1"))
    served.injector.faults.append(Fault("POST", "/v1/jobs", 503, times=1, when="after"))
    started = time.monotonic()
    job = served.sdk.jobs.create(dataset_id=dataset.id, target="label")
    elapsed = time.monotonic() - started
    attempts = served.injector.requests("POST", "/v1/jobs")
    assert [a.answered for a in attempts] == [429, 503, 201]
    assert len({a.idempotency_key for a in attempts}) == 1
    # FAST backs off for at most 0.05 s: only Retry-After explains a whole second.
    assert elapsed >= 1.0
    assert [j.id for j in served.sdk.jobs.list()] == [job.id]
    assert job.status == "queued"


def test_two_calls_get_two_keys(served: Served, seed_csv: Path) -> None:
    first = served.sdk.datasets.upload(seed_csv)
    second = served.sdk.datasets.upload(seed_csv)
    attempts = served.injector.requests("POST", "/v1/datasets")
    assert attempts[0].idempotency_key != attempts[1].idempotency_key
    assert first.id != second.id


def test_gives_up_after_max_retries(served: Served) -> None:
    served.injector.faults.append(Fault("GET", "/v1/jobs", 503, times=10))
    with pytest.raises(ServerError) as caught:
        served.sdk.jobs.list_page()
    assert caught.value.status == 503
    assert caught.value.code == "injected_503"
    assert len(served.injector.requests("GET", "/v1/jobs")) == FAST.max_retries + 1


def test_rate_limit_error_carries_retry_after(served: Served) -> None:
    served.injector.faults.append(Fault("GET", "/v1/models", 429, times=10, retry_after="0"))
    with pytest.raises(RateLimitError) as caught:
        served.sdk.models.list_page()
    assert caught.value.retry_after == 0.0
    assert caught.value.type == "rate_limit_error"


def test_client_errors_are_not_retried(served: Served) -> None:
    with pytest.raises(NotFoundError):
        list(served.sdk.jobs.events("job_missing"))
    assert len(served.injector.requests("GET", "/v1/jobs/job_missing/events")) == 1


class DropFirstConnections(httpx.AsyncBaseTransport):
    """Refuses the first `drops` connections the way a restarting server does."""

    def __init__(self, inner: httpx.AsyncBaseTransport, drops: int) -> None:
        self.inner = inner
        self.drops = drops

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.drops > 0:
            self.drops -= 1
            raise httpx.ConnectError("connection refused", request=request)
        return await self.inner.handle_async_request(request)


def test_async_client_retries_connection_errors(
    settings: Settings, api_key: str, seed_csv: Path
) -> None:
    injector = FaultInjector(create_app(settings))
    transport = DropFirstConnections(httpx.ASGITransport(app=injector), drops=2)

    async def scenario() -> tuple[str, list[str]]:
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncClient(api_key, "http://sdk.test", http_client=http, retry=FAST)
            dataset = await client.datasets.upload(seed_csv)
            listed = [d.id async for d in client.datasets.list()]
            return dataset.id, listed

    dataset_id, listed = asyncio.run(scenario())
    assert transport.drops == 0
    assert listed == [dataset_id]
    assert len(injector.requests("POST", "/v1/datasets")) == 1

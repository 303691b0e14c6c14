"""The SDK against the real app in this process: the app (behind a FaultInjector that
injects nothing unless a test asks) on the real PostgreSQL and Redis."""

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from fault_injection import FaultInjector

from app.config import Settings
from app.main import create_app
from shardtrain import Client, RetryPolicy

# Fast retries: the backoff is not what these tests measure (Retry-After is).
FAST = RetryPolicy(max_retries=3, initial_delay=0.01, max_delay=0.05)


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    """PostgreSQL only: the SDK does not care which database the server runs on."""
    return postgres_url


@dataclass
class Served:
    injector: FaultInjector
    sdk: Client
    http: TestClient
    api_key: str


@pytest.fixture
def served(settings: Settings, api_key: str) -> Iterator[Served]:
    injector = FaultInjector(create_app(settings))
    with TestClient(injector, raise_server_exceptions=False) as http:
        sdk = Client(api_key=api_key, base_url=str(http.base_url), http_client=http, retry=FAST)
        yield Served(injector=injector, sdk=sdk, http=http, api_key=api_key)
        sdk.close()

"""The SDK against the real app in this process: the app (behind a FaultInjector that
injects nothing unless a test asks) on the real PostgreSQL and Redis."""

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from fault_injection import FaultInjector
from sdk_harness import FAST, Served

from app.config import Settings
from app.main import create_app
from shardtrain import Client


@pytest.fixture(scope="session")
def database_url(postgres_url: str) -> str:
    """PostgreSQL only: the SDK does not care which database the server runs on."""
    return postgres_url


@pytest.fixture
def served(settings: Settings, api_key: str) -> Iterator[Served]:
    injector = FaultInjector(create_app(settings))
    with TestClient(injector, raise_server_exceptions=False) as http:
        sdk = Client(api_key=api_key, base_url=str(http.base_url), http_client=http, retry=FAST)
        yield Served(injector=injector, sdk=sdk, http=http, api_key=api_key)
        sdk.close()

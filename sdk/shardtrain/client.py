"""`Client` and `AsyncClient`: the API key and base URL from arguments, else from
`SHARDTRAIN_API_KEY` / `SHARDTRAIN_BASE_URL` (or the server's own `SHARDTRAIN_HOST` /
`SHARDTRAIN_PORT`), else the `make run` defaults."""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import httpx

from shardtrain._http import DEFAULT_TIMEOUT, AsyncHTTP, RetryPolicy, SyncHTTP
from shardtrain.errors import ShardtrainError
from shardtrain.resources import (
    AsyncDatasets,
    AsyncJobs,
    AsyncModelNames,
    AsyncModels,
    AsyncSweeps,
    Datasets,
    Jobs,
    ModelNames,
    Models,
    Sweeps,
)


def _dev_key_file() -> Path:
    return Path(os.environ.get("SHARDTRAIN_DATA_DIR", ".shardtrain")) / "dev-api-key"


def resolve_api_key(api_key: str | None) -> str:
    """The argument, else `SHARDTRAIN_API_KEY`, else the dev key `make run` writes to
    `$SHARDTRAIN_DATA_DIR/dev-api-key` (`./.shardtrain/dev-api-key`)."""
    key = api_key or os.environ.get("SHARDTRAIN_API_KEY")
    if not key and _dev_key_file().is_file():
        key = _dev_key_file().read_text().strip()
    if not key:
        raise ShardtrainError(
            "No API key: pass api_key=, or set SHARDTRAIN_API_KEY "
            "(an operator makes one with `python -m app.admin create-key`)."
        )
    return key


# A server bound to every interface is reached on loopback from its own machine.
_WILDCARD_HOSTS = {"0.0.0.0": "127.0.0.1", "::": "::1"}


def resolve_base_url(base_url: str | None) -> str:
    """The argument, else `SHARDTRAIN_BASE_URL`, else `http://$SHARDTRAIN_HOST:$SHARDTRAIN_PORT`
    (the variables `make run` starts the server with, so a shell that moved the server to
    another port reaches it without a second variable), else `http://127.0.0.1:8000`."""
    explicit = base_url or os.environ.get("SHARDTRAIN_BASE_URL")
    if explicit:
        return explicit
    host = os.environ.get("SHARDTRAIN_HOST", "").strip() or "127.0.0.1"
    port = os.environ.get("SHARDTRAIN_PORT", "").strip() or "8000"
    if not port.isdigit():
        raise ShardtrainError(f"SHARDTRAIN_PORT must be a port number, not {port!r}.")
    host = _WILDCARD_HOSTS.get(host, host)
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 address in a URL
    return f"http://{host}:{port}"


def _policy(max_retries: int, retry: RetryPolicy | None) -> RetryPolicy:
    return retry if retry is not None else RetryPolicy(max_retries=max_retries)


class Client:
    """Synchronous client. Use as a context manager, or call `close()`.

    `http_client` lets a caller supply its own `httpx.Client` (proxies, a test
    transport); the SDK then leaves closing it to the caller."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
        http_client: httpx.Client | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._http = SyncHTTP(
            base_url=self.base_url,
            api_key=resolve_api_key(api_key),
            timeout=timeout,
            retry=_policy(max_retries, retry),
            http_client=http_client,
        )
        self.datasets = Datasets(self._http)
        self.jobs = Jobs(self._http)
        self.models = Models(self._http)
        self.model_names = ModelNames(self._http)
        self.sweeps = Sweeps(self._http)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClient:
    """The same API with `async` methods; `list()`, `events()` and `sweeps.watch()` are
    async iterators."""

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self._http = AsyncHTTP(
            base_url=self.base_url,
            api_key=resolve_api_key(api_key),
            timeout=timeout,
            retry=_policy(max_retries, retry),
            http_client=http_client,
        )
        self.datasets = AsyncDatasets(self._http)
        self.jobs = AsyncJobs(self._http)
        self.models = AsyncModels(self._http)
        self.model_names = AsyncModelNames(self._http)
        self.sweeps = AsyncSweeps(self._http)

    async def close(self) -> None:
        await self._http.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

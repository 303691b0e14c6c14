"""The HTTP layer under both clients: auth, Idempotency-Key, retries with backoff, and
the mapping of error responses to exceptions.

A request is retried on a connection error, 429 (waiting as long as `Retry-After` says),
5xx, and 409 `conflict` (a concurrent request or worker won a race; the API documents
that a retry acts on the new state). Every POST carries one `Idempotency-Key`, made once
per call and sent unchanged on every attempt, so a retried create returns the object the
first attempt made instead of making a second one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from shardtrain._version import __version__
from shardtrain.errors import APIConnectionError, error_from_response, parse_retry_after

logger = logging.getLogger("shardtrain")

DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
USER_AGENT = f"shardtrain-python/{__version__}"


@dataclass(frozen=True)
class RetryPolicy:
    """`max_retries` more attempts after the first; exponential backoff with jitter from
    `initial_delay` up to `max_delay`; a server's `Retry-After` is honoured up to
    `max_retry_after` seconds."""

    max_retries: int = 3
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0

    def backoff(self, attempt: int) -> float:
        base = min(self.max_delay, self.initial_delay * (2**attempt))
        return base * (0.5 + random.random() / 2)

    def delay_for(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            if retry_after is not None:
                return min(retry_after, self.max_retry_after)
        return self.backoff(attempt)


def is_retryable(response: httpx.Response) -> bool:
    status = response.status_code
    if status == 429 or status >= 500:
        return status != 501
    if status == 409:
        try:
            body = response.json()
        except ValueError:
            return False
        return isinstance(body, dict) and body.get("error", {}).get("code") == "conflict"
    return False


def _headers(api_key: str, method: str, extra: Mapping[str, str] | None) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT}
    if method.upper() == "POST":
        headers["Idempotency-Key"] = f"shardtrain-{uuid.uuid4()}"
    headers.update(extra or {})
    return headers


@dataclass
class _Call:
    """One logical call: the same method, URL, headers (Idempotency-Key included) and
    body arguments on every attempt. httpx seeks a file body back to 0 when it renders
    the multipart stream again, so an upload retry re-reads the file from its start."""

    method: str
    url: str
    headers: dict[str, str]
    params: Mapping[str, Any] | None
    json: Any
    files: Mapping[str, Any] | None
    data: Mapping[str, Any] | None
    content: bytes | None

    def build(self, client: httpx.Client | httpx.AsyncClient) -> httpx.Request:
        params = {k: v for k, v in (self.params or {}).items() if v is not None}
        return client.build_request(
            self.method,
            self.url,
            headers=self.headers,
            params=params,
            json=self.json,
            files=self.files,
            data=self.data,
            content=self.content,
        )


def _new_call(
    base_url: str, api_key: str, method: str, path: str, options: dict[str, Any]
) -> _Call:
    call = _Call(
        method=method,
        url=base_url + path,
        headers=_headers(api_key, method, options.pop("headers", None)),
        params=options.pop("params", None),
        json=options.pop("json", None),
        files=options.pop("files", None),
        data=options.pop("data", None),
        content=options.pop("content", None),
    )
    if options:  # a keyword this layer would otherwise drop without a word
        raise TypeError(f"unexpected request options: {sorted(options)}")
    return call


def _log_retry(call: _Call, attempt: int, delay: float, why: str) -> None:
    logger.info(
        "retrying %s %s in %.2fs (attempt %d): %s", call.method, call.url, delay, attempt + 2, why
    )


class SyncHTTP:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: httpx.Timeout | float,
        retry: RetryPolicy,
        http_client: httpx.Client | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retry = retry
        self._owns_client = http_client is None
        self.client = http_client or httpx.Client(timeout=timeout)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> _Call:
        return _new_call(self.base_url, self.api_key, method, path, kwargs)

    def _send(self, call: _Call, *, stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            try:
                # An artifact on S3 answers 307 to a presigned URL; httpx drops the
                # Authorization header on the way to the other host.
                response = self.client.send(
                    call.build(self.client), stream=stream, follow_redirects=True
                )
            except httpx.TransportError as exc:
                if attempt >= self.retry.max_retries:
                    raise APIConnectionError(f"{call.method} {call.url}: {exc!r}") from exc
                delay = self.retry.backoff(attempt)
                _log_retry(call, attempt, delay, repr(exc))
            else:
                if response.is_success:
                    return response
                response.read()
                response.close()
                if attempt >= self.retry.max_retries or not is_retryable(response):
                    raise error_from_response(response)
                delay = self.retry.delay_for(attempt, response)
                _log_retry(call, attempt, delay, f"HTTP {response.status_code}")
            time.sleep(delay)
            attempt += 1

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return self._send(self._call(method, path, **kwargs), stream=False)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def stream(self, method: str, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        """An open response whose body is read as it arrives; retried until the status
        line is a success, not after the body has started."""
        response = self._send(self._call(method, path, **kwargs), stream=True)
        try:
            yield response
        finally:
            response.close()


class AsyncHTTP:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        timeout: httpx.Timeout | float,
        retry: RetryPolicy,
        http_client: httpx.AsyncClient | None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.retry = retry
        self._owns_client = http_client is None
        self.client = http_client or httpx.AsyncClient(timeout=timeout)

    async def close(self) -> None:
        if self._owns_client:
            await self.client.aclose()

    def _call(self, method: str, path: str, **kwargs: Any) -> _Call:
        return _new_call(self.base_url, self.api_key, method, path, kwargs)

    async def _send(self, call: _Call, *, stream: bool) -> httpx.Response:
        attempt = 0
        while True:
            try:
                response = await self.client.send(
                    call.build(self.client), stream=stream, follow_redirects=True
                )
            except httpx.TransportError as exc:
                if attempt >= self.retry.max_retries:
                    raise APIConnectionError(f"{call.method} {call.url}: {exc!r}") from exc
                delay = self.retry.backoff(attempt)
                _log_retry(call, attempt, delay, repr(exc))
            else:
                if response.is_success:
                    return response
                await response.aread()
                await response.aclose()
                if attempt >= self.retry.max_retries or not is_retryable(response):
                    raise error_from_response(response)
                delay = self.retry.delay_for(attempt, response)
                _log_retry(call, attempt, delay, f"HTTP {response.status_code}")
            await asyncio.sleep(delay)
            attempt += 1

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return await self._send(self._call(method, path, **kwargs), stream=False)

    async def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    @asynccontextmanager
    async def stream(self, method: str, path: str, **kwargs: Any) -> AsyncIterator[httpx.Response]:
        response = await self._send(self._call(method, path, **kwargs), stream=True)
        try:
            yield response
        finally:
            await response.aclose()

"""A resource's events (a job's, a sweep's): listed page by page, or followed live over
server-sent events until the resource has ended, sync and async."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Generic, Protocol, TypeVar

import httpx
from httpx_sse import EventSource
from pydantic import BaseModel

from shardtrain._http import AsyncHTTP, RetryPolicy, SyncHTTP
from shardtrain.errors import APIConnectionError
from shardtrain.models import Page
from shardtrain.pagination import aiterate_pages, iterate_pages

EVENTS_PAGE = 1000


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


Listed = TypeVar("Listed", bound=BaseModel)
Streamed = TypeVar("Streamed", bound=_Identified)


# The caller passes the page type (`Page[Event]`) rather than the event class: a
# parametrised generic cannot be built from a type variable where mypy can check it.
def list_events(
    http: SyncHTTP, path: str, page: type[Page[Listed]], after: str | None
) -> Iterator[Listed]:
    def fetch(cursor: str | None) -> Page[Listed]:
        params = {"limit": EVENTS_PAGE, "after": cursor or after}
        return page.model_validate(http.json("GET", path, params=params))

    return iterate_pages(fetch)


def alist_events(
    http: AsyncHTTP, path: str, page: type[Page[Listed]], after: str | None
) -> AsyncIterator[Listed]:
    async def fetch(cursor: str | None) -> Page[Listed]:
        params = {"limit": EVENTS_PAGE, "after": cursor or after}
        return page.model_validate(await http.json("GET", path, params=params))

    return aiterate_pages(fetch)


class _Resume(Generic[Streamed]):
    """What a followed stream needs to reconnect: the last event received (sent back as
    `Last-Event-ID`) and the failures in a row. Kept apart from the loops so that sync
    and async reconnect by the same rules."""

    def __init__(
        self,
        retry: RetryPolicy,
        parse: Callable[[str], Streamed],
        last: str | None,
        owner_id: str,
    ) -> None:
        self._retry = retry
        self._parse = parse
        self._last = last
        self._owner_id = owner_id
        self._failures = 0

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
        if self._last is not None:
            headers["Last-Event-ID"] = self._last
        return headers

    def received(self, data: str) -> Streamed | None:
        if not data:
            return None  # the server's keep-alive comment, not an event
        event = self._parse(data)
        self._last, self._failures = event.id, 0
        return event

    def broke(self, exc: httpx.TransportError) -> float:
        """The seconds to wait before resuming after the last event received; once
        `max_retries` reconnects in a row have failed, APIConnectionError."""
        self._failures += 1
        if self._failures > self._retry.max_retries:
            raise APIConnectionError(f"event stream of {self._owner_id}: {exc!r}") from exc
        return self._retry.backoff(self._failures - 1)

    def closed(self) -> float:
        """The seconds to wait before reconnecting after a close while the resource has
        not ended (a server restart)."""
        return self._retry.backoff(0)


def follow_events(
    http: SyncHTTP,
    path: str,
    parse: Callable[[str], Streamed],
    last: str | None,
    *,
    ended: Callable[[], bool],
    owner_id: str,
) -> Iterator[Streamed]:
    """Each event after `last` as it arrives (`parse` reads one from its JSON), until the
    server closes the stream and `ended()` is true; `owner_id` names the stream in the
    APIConnectionError raised when it cannot be resumed."""
    resume = _Resume(http.retry, parse, last, owner_id)
    while True:
        try:
            with http.stream("GET", path, headers=resume.headers()) as response:
                for sse in EventSource(response).iter_sse():
                    if (event := resume.received(sse.data)) is not None:
                        yield event
        except httpx.TransportError as exc:
            time.sleep(resume.broke(exc))
            continue
        # The server closes the stream once the resource has ended and every event is
        # sent; any other close is resumed.
        if ended():
            return
        time.sleep(resume.closed())


async def afollow_events(
    http: AsyncHTTP,
    path: str,
    parse: Callable[[str], Streamed],
    last: str | None,
    *,
    ended: Callable[[], Awaitable[bool]],
    owner_id: str,
) -> AsyncIterator[Streamed]:
    """`follow_events`, async."""
    resume = _Resume(http.retry, parse, last, owner_id)
    while True:
        try:
            async with http.stream("GET", path, headers=resume.headers()) as response:
                async for sse in EventSource(response).aiter_sse():
                    if (event := resume.received(sse.data)) is not None:
                        yield event
        except httpx.TransportError as exc:
            await asyncio.sleep(resume.broke(exc))
            continue
        if await ended():
            return
        await asyncio.sleep(resume.closed())

"""Walk every page of a cursor-paginated list: `?after=<last id of the page>` until
`has_more` is false."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TypeVar

from pydantic import BaseModel

from shardtrain.models import Page

Item = TypeVar("Item", bound=BaseModel)


def _next_cursor(page: Page[Item]) -> str | None:
    if not page.has_more or not page.data:
        return None
    return str(page.data[-1].model_dump()["id"])


def iterate_pages(fetch: Callable[[str | None], Page[Item]]) -> Iterator[Item]:
    after: str | None = None
    while True:
        page = fetch(after)
        yield from page.data
        after = _next_cursor(page)
        if after is None:
            return


async def aiterate_pages(
    fetch: Callable[[str | None], Awaitable[Page[Item]]],
) -> AsyncIterator[Item]:
    after: str | None = None
    while True:
        page = await fetch(after)
        for item in page.data:
            yield item
        after = _next_cursor(page)
        if after is None:
            return

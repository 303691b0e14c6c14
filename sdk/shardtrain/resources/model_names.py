"""`client.model_names`: the names jobs train versions under (`model_name` in the job
spec), each with its versions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from urllib.parse import quote

from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.models import ModelName, ModelNameSummary, Page
from shardtrain.pagination import aiterate_pages, iterate_pages

PATH = "/v1/model-names"


def _params(limit: int, after: str | None) -> dict[str, str | int]:
    return {"limit": limit, **({"after": after} if after else {})}


def _path(name: str) -> str:
    return f"{PATH}/{quote(name, safe='')}"


class ModelNames:
    def __init__(self, http: SyncHTTP) -> None:
        self._http = http

    def list_page(self, *, limit: int = 20, after: str | None = None) -> Page[ModelNameSummary]:
        body = self._http.json("GET", PATH, params=_params(limit, after))
        return Page[ModelNameSummary].model_validate(body)

    def list(self, *, limit: int = 20) -> Iterator[ModelNameSummary]:
        return iterate_pages(lambda after: self.list_page(limit=limit, after=after))

    def get(self, name: str) -> ModelName:
        """The name with every version, oldest first."""
        return ModelName.model_validate(self._http.json("GET", _path(name)))


class AsyncModelNames:
    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http

    async def list_page(
        self, *, limit: int = 20, after: str | None = None
    ) -> Page[ModelNameSummary]:
        body = await self._http.json("GET", PATH, params=_params(limit, after))
        return Page[ModelNameSummary].model_validate(body)

    def list(self, *, limit: int = 20) -> AsyncIterator[ModelNameSummary]:
        return aiterate_pages(lambda after: self.list_page(limit=limit, after=after))

    async def get(self, name: str) -> ModelName:
        return ModelName.model_validate(await self._http.json("GET", _path(name)))

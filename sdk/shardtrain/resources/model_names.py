"""`client.model_names`: the names jobs train versions under (`model_name` in the job
spec), each with its versions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shardtrain import _arrow as arrow
from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.models import ModelName, ModelNameSummary, Page, Prediction
from shardtrain.pagination import aiterate_pages, iterate_pages

if TYPE_CHECKING:
    import pyarrow as pa

PATH = "/v1/model-names"


def _params(limit: int, after: str | None) -> dict[str, str | int]:
    return {"limit": limit, **({"after": after} if after else {})}


def _path(name: str) -> str:
    return f"{PATH}/{quote(name, safe='')}"


def _predict_path(name: str, version: int) -> str:
    return f"{_path(name)}/versions/{version}/predict"


def _records(inputs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"inputs": [dict(r) for r in inputs]}


_ARROW = {"content-type": arrow.ARROW_STREAM}


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

    def predict(self, name: str, version: int, inputs: Sequence[Mapping[str, Any]]) -> Prediction:
        """As `models.predict`, with the model that is `version` of `name`."""
        body = self._http.json("POST", _predict_path(name, version), json=_records(inputs))
        return Prediction.model_validate(body)

    def predict_table(self, name: str, version: int, table: pa.Table) -> pa.Table:
        """As `models.predict_table`, with the model that is `version` of `name`."""
        response = self._http.request(
            "POST", _predict_path(name, version), content=arrow.encode(table), headers=_ARROW
        )
        return arrow.decode(response.content)


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

    async def predict(
        self, name: str, version: int, inputs: Sequence[Mapping[str, Any]]
    ) -> Prediction:
        body = await self._http.json("POST", _predict_path(name, version), json=_records(inputs))
        return Prediction.model_validate(body)

    async def predict_table(self, name: str, version: int, table: pa.Table) -> pa.Table:
        response = await self._http.request(
            "POST", _predict_path(name, version), content=arrow.encode(table), headers=_ARROW
        )
        return arrow.decode(response.content)

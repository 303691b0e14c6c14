"""`client.model_names`: the names jobs train versions under (`model_name` in the job
spec), each with its versions, and their aliases: `champion` (moved by the champion gate,
`deploy_if.beats`, or by hand with a reason) and any of the caller's own (`staging`),
each move recorded with who made it and why."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from shardtrain import _arrow as arrow
from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.models import (
    ModelAlias,
    ModelAliasChange,
    ModelName,
    ModelNameSummary,
    Page,
    Prediction,
)
from shardtrain.pagination import aiterate_pages, iterate_pages

if TYPE_CHECKING:
    import pyarrow as pa

PATH = "/v1/model-names"
# The alias the champion gate moves; moving it by hand needs a reason.
CHAMPION = "champion"


def _params(limit: int, after: str | None) -> dict[str, str | int]:
    return {"limit": limit, **({"after": after} if after else {})}


def _path(name: str) -> str:
    return f"{PATH}/{quote(name, safe='')}"


def _predict_path(name: str, version: int) -> str:
    return f"{_path(name)}/versions/{version}/predict"


def _alias_path(name: str, alias: str) -> str:
    return f"{_path(name)}/aliases/{quote(alias, safe='')}"


def _alias_body(version: int, reason: str | None) -> dict[str, Any]:
    return {"version": version, **({"reason": reason} if reason is not None else {})}


def _alias_predict_path(name: str, alias: str) -> str:
    return f"{_alias_path(name, alias)}/predict"


def _changes_path(name: str) -> str:
    return f"{_path(name)}/alias-changes"


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

    def predict_alias(
        self, name: str, alias: str, inputs: Sequence[Mapping[str, Any]]
    ) -> Prediction:
        """As `predict`, with the version `alias` names at the moment of the request; the
        answer's `model_id` says which model answered."""
        body = self._http.json("POST", _alias_predict_path(name, alias), json=_records(inputs))
        return Prediction.model_validate(body)

    def predict_alias_table(self, name: str, alias: str, table: pa.Table) -> pa.Table:
        """As `predict_table`, with the version `alias` names."""
        response = self._http.request(
            "POST", _alias_predict_path(name, alias), content=arrow.encode(table), headers=_ARROW
        )
        return arrow.decode(response.content)

    def set_alias(
        self, name: str, alias: str, version: int, reason: str | None = None
    ) -> ModelAlias:
        """Create or move `alias` to `version`. `champion` needs a `reason` (else
        ValidationError, param `reason`) and a deployed version (else ConflictError,
        code `version_not_deployed`). The move is recorded with the key's id and reason."""
        body = self._http.json("PUT", _alias_path(name, alias), json=_alias_body(version, reason))
        return ModelAlias.model_validate(body)

    def promote(self, name: str, version: int, reason: str) -> ModelAlias:
        """Make `version` the champion by hand (a promotion or a rollback), saying why."""
        return self.set_alias(name, CHAMPION, version, reason)

    def delete_alias(self, name: str, alias: str, reason: str | None = None) -> ModelAlias:
        """Remove `alias` (`champion` needs a `reason`); answers the alias as it was."""
        body = self._http.json("DELETE", _alias_path(name, alias), params={"reason": reason})
        return ModelAlias.model_validate(body)

    def alias_changes_page(
        self, name: str, *, limit: int = 20, after: str | None = None
    ) -> Page[ModelAliasChange]:
        body = self._http.json("GET", _changes_path(name), params=_params(limit, after))
        return Page[ModelAliasChange].model_validate(body)

    def alias_changes(self, name: str, *, limit: int = 20) -> Iterator[ModelAliasChange]:
        """Every move of every alias of `name`, newest first, page after page."""
        return iterate_pages(lambda after: self.alias_changes_page(name, limit=limit, after=after))


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

    async def predict_alias(
        self, name: str, alias: str, inputs: Sequence[Mapping[str, Any]]
    ) -> Prediction:
        body = await self._http.json(
            "POST", _alias_predict_path(name, alias), json=_records(inputs)
        )
        return Prediction.model_validate(body)

    async def predict_alias_table(self, name: str, alias: str, table: pa.Table) -> pa.Table:
        response = await self._http.request(
            "POST", _alias_predict_path(name, alias), content=arrow.encode(table), headers=_ARROW
        )
        return arrow.decode(response.content)

    async def set_alias(
        self, name: str, alias: str, version: int, reason: str | None = None
    ) -> ModelAlias:
        body = await self._http.json(
            "PUT", _alias_path(name, alias), json=_alias_body(version, reason)
        )
        return ModelAlias.model_validate(body)

    async def promote(self, name: str, version: int, reason: str) -> ModelAlias:
        return await self.set_alias(name, CHAMPION, version, reason)

    async def delete_alias(self, name: str, alias: str, reason: str | None = None) -> ModelAlias:
        body = await self._http.json("DELETE", _alias_path(name, alias), params={"reason": reason})
        return ModelAlias.model_validate(body)

    async def alias_changes_page(
        self, name: str, *, limit: int = 20, after: str | None = None
    ) -> Page[ModelAliasChange]:
        body = await self._http.json("GET", _changes_path(name), params=_params(limit, after))
        return Page[ModelAliasChange].model_validate(body)

    def alias_changes(self, name: str, *, limit: int = 20) -> AsyncIterator[ModelAliasChange]:
        return aiterate_pages(lambda after: self.alias_changes_page(name, limit=limit, after=after))

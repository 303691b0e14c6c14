"""`client.models`: list, read, predict on raw records (JSON, or Arrow tables), deploy a
rejected model by hand, download the artifact (safetensors or ONNX), streamed to a file."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shardtrain import _arrow as arrow
from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.models import Model, Page, Prediction
from shardtrain.pagination import aiterate_pages, iterate_pages
from shardtrain.progress import TransferBar

if TYPE_CHECKING:
    import pyarrow as pa

PATH = "/v1/models"
_ARROW = {"content-type": arrow.ARROW_STREAM}
ArtifactFormat = Literal["safetensors", "onnx"]
ModelStatus = Literal["deployed", "rejected"]


def _list_params(
    limit: int, after: str | None, job_id: str | None, status: ModelStatus | None
) -> dict[str, Any]:
    return {"limit": limit, "after": after, "job_id": job_id, "status": status}


def _destination(model_id: str, path: str | os.PathLike[str] | None, fmt: str) -> Path:
    target = Path(path) if path is not None else Path(f"{model_id}.{fmt}")
    return target / f"{model_id}.{fmt}" if target.is_dir() else target


def _total(headers: Mapping[str, str]) -> int | None:
    length = headers.get("content-length")
    return int(length) if length and length.isdigit() else None


class Models:
    def __init__(self, http: SyncHTTP) -> None:
        self._http = http

    def list_page(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        job_id: str | None = None,
        status: ModelStatus | None = None,
    ) -> Page[Model]:
        params = _list_params(limit, after, job_id, status)
        return Page[Model].model_validate(self._http.json("GET", PATH, params=params))

    def list(
        self, *, limit: int = 20, job_id: str | None = None, status: ModelStatus | None = None
    ) -> Iterator[Model]:
        return iterate_pages(
            lambda after: self.list_page(limit=limit, after=after, job_id=job_id, status=status)
        )

    def get(self, model_id: str) -> Model:
        return Model.model_validate(self._http.json("GET", f"{PATH}/{model_id}"))

    def predict(self, model_id: str, inputs: Sequence[Mapping[str, Any]]) -> Prediction:
        """Records `{column: value}` in, predictions (and class probabilities) out."""
        body = self._http.json(
            "POST", f"{PATH}/{model_id}/predict", json={"inputs": [dict(r) for r in inputs]}
        )
        return Prediction.model_validate(body)

    def predict_table(self, model_id: str, table: pa.Table) -> pa.Table:
        """A pyarrow table of raw columns in; a table of `row_id`, `prediction` and
        `probability_<class>` out. No Python object per row on either side, so large
        requests run several times faster than `predict` (needs the `arrow` extra)."""
        response = self._http.request(
            "POST", f"{PATH}/{model_id}/predict", content=arrow.encode(table), headers=_ARROW
        )
        return arrow.decode(response.content)

    def deploy(self, model_id: str) -> Model:
        return Model.model_validate(self._http.json("POST", f"{PATH}/{model_id}/deploy"))

    def download(
        self,
        model_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        format: ArtifactFormat = "safetensors",
        progress: bool = False,
    ) -> Path:
        """Stream the artifact to `path` (a file, or a directory for `<id>.<format>`;
        default the current directory). Written to a temporary name and renamed, so a
        broken download leaves no partial file under the final name."""
        target = _destination(model_id, path, format)
        partial = target.with_name(target.name + ".part")
        with self._http.stream(
            "GET", f"{PATH}/{model_id}/artifact", params={"format": format}
        ) as response:
            total = _total(response.headers)
            try:
                with (
                    partial.open("wb") as out,
                    TransferBar(f"download {target.name}", total, progress) as bar,
                ):
                    for chunk in response.iter_bytes():
                        out.write(chunk)
                        bar.advance(len(chunk))
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)
        return target


class AsyncModels:
    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http

    async def list_page(
        self,
        *,
        limit: int = 20,
        after: str | None = None,
        job_id: str | None = None,
        status: ModelStatus | None = None,
    ) -> Page[Model]:
        params = _list_params(limit, after, job_id, status)
        return Page[Model].model_validate(await self._http.json("GET", PATH, params=params))

    def list(
        self, *, limit: int = 20, job_id: str | None = None, status: ModelStatus | None = None
    ) -> AsyncIterator[Model]:
        return aiterate_pages(
            lambda after: self.list_page(limit=limit, after=after, job_id=job_id, status=status)
        )

    async def get(self, model_id: str) -> Model:
        return Model.model_validate(await self._http.json("GET", f"{PATH}/{model_id}"))

    async def predict(self, model_id: str, inputs: Sequence[Mapping[str, Any]]) -> Prediction:
        body = await self._http.json(
            "POST", f"{PATH}/{model_id}/predict", json={"inputs": [dict(r) for r in inputs]}
        )
        return Prediction.model_validate(body)

    async def predict_table(self, model_id: str, table: pa.Table) -> pa.Table:
        response = await self._http.request(
            "POST", f"{PATH}/{model_id}/predict", content=arrow.encode(table), headers=_ARROW
        )
        return arrow.decode(response.content)

    async def deploy(self, model_id: str) -> Model:
        return Model.model_validate(await self._http.json("POST", f"{PATH}/{model_id}/deploy"))

    async def download(
        self,
        model_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        format: ArtifactFormat = "safetensors",
        progress: bool = False,
    ) -> Path:
        target = _destination(model_id, path, format)
        partial = target.with_name(target.name + ".part")
        async with self._http.stream(
            "GET", f"{PATH}/{model_id}/artifact", params={"format": format}
        ) as response:
            total = _total(response.headers)
            try:
                with (
                    partial.open("wb") as out,
                    TransferBar(f"download {target.name}", total, progress) as bar,
                ):
                    async for chunk in response.aiter_bytes():
                        out.write(chunk)
                        bar.advance(len(chunk))
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
        partial.replace(target)
        return target

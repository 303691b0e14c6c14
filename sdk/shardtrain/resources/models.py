"""`client.models`: list, read, predict on raw records (JSON, or Arrow tables), deploy a
rejected model by hand or
undeploy one, delete one, download the artifact (safetensors or ONNX), streamed to a file,
and batch predictions: a whole dataset predicted on a worker, its output downloaded as
Parquet or CSV."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from shardtrain import _arrow as arrow
from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.errors import WaitTimeoutError
from shardtrain.models import BatchPrediction, Model, ModelDeleted, Page, Prediction
from shardtrain.pagination import aiterate_pages, iterate_pages
from shardtrain.progress import TransferBar

if TYPE_CHECKING:
    import pyarrow as pa

PATH = "/v1/models"
_ARROW = {"content-type": arrow.ARROW_STREAM}
ArtifactFormat = Literal["safetensors", "onnx"]
ModelStatus = Literal["deployed", "rejected", "undeployed"]
BatchOutputFormat = Literal["parquet", "csv"]


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


def _batch_path(model_id: str, batch_id: str | None = None) -> str:
    base = f"{PATH}/{model_id}/batch_predictions"
    return base if batch_id is None else f"{base}/{batch_id}"


def _batch_create(
    dataset_id: str, idempotency_key: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    # Every POST already carries a key made once per call (see _http); one the caller
    # passes also makes a second call with it return the first batch prediction, where
    # the server honours the header.
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    return {"dataset_id": dataset_id}, headers


def _deadline(timeout: float | None) -> float | None:
    return None if timeout is None else time.monotonic() + timeout


def _still_waiting(batch: BatchPrediction, deadline: float | None) -> bool:
    if batch.done:
        return False
    if deadline is not None and time.monotonic() >= deadline:
        raise WaitTimeoutError(f"batch prediction {batch.id} still {batch.status}")
    return True


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

    def undeploy(self, model_id: str) -> Model:
        """Stop serving it (status `undeployed`); `deploy()` serves it again."""
        return Model.model_validate(self._http.json("POST", f"{PATH}/{model_id}/undeploy"))

    def delete(self, model_id: str) -> ModelDeleted:
        """The model, its artifact and its batch predictions; `ConflictError` while one of
        its batch predictions is queued or running. Its job stays."""
        return ModelDeleted.model_validate(self._http.json("DELETE", f"{PATH}/{model_id}"))

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
        return self._save(f"{PATH}/{model_id}/artifact", format, target, progress)

    def batch_predict(
        self, model_id: str, dataset_id: str, *, idempotency_key: str | None = None
    ) -> BatchPrediction:
        """Predict over a whole ready dataset on a worker; `wait_batch_prediction()`
        for the end, `download_batch_output()` for the predictions."""
        body, headers = _batch_create(dataset_id, idempotency_key)
        created = self._http.json("POST", _batch_path(model_id), json=body, headers=headers)
        return BatchPrediction.model_validate(created)

    def get_batch_prediction(self, model_id: str, batch_id: str) -> BatchPrediction:
        body = self._http.json("GET", _batch_path(model_id, batch_id))
        return BatchPrediction.model_validate(body)

    def wait_batch_prediction(
        self,
        model_id: str,
        batch_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 0.5,
    ) -> BatchPrediction:
        """Poll until it ends, `succeeded` or `failed` (then `error` says why);
        `WaitTimeoutError` after `timeout` seconds."""
        deadline = _deadline(timeout)
        while _still_waiting(batch := self.get_batch_prediction(model_id, batch_id), deadline):
            time.sleep(poll_interval)
        return batch

    def download_batch_output(
        self,
        model_id: str,
        batch_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        format: BatchOutputFormat = "parquet",
        progress: bool = False,
    ) -> Path:
        """Stream a succeeded batch prediction's output (`row_id`, `prediction`,
        `probability_<class>`) to `path` (a file, or a directory for `<id>.<format>`)."""
        target = _destination(batch_id, path, format)
        url = f"{_batch_path(model_id, batch_id)}/output"
        return self._save(url, format, target, progress)

    def _save(self, url: str, format: str, target: Path, progress: bool) -> Path:
        partial = target.with_name(target.name + ".part")
        with self._http.stream("GET", url, params={"format": format}) as response:
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

    async def undeploy(self, model_id: str) -> Model:
        body = await self._http.json("POST", f"{PATH}/{model_id}/undeploy")
        return Model.model_validate(body)

    async def delete(self, model_id: str) -> ModelDeleted:
        return ModelDeleted.model_validate(await self._http.json("DELETE", f"{PATH}/{model_id}"))

    async def download(
        self,
        model_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        format: ArtifactFormat = "safetensors",
        progress: bool = False,
    ) -> Path:
        target = _destination(model_id, path, format)
        return await self._save(f"{PATH}/{model_id}/artifact", format, target, progress)

    async def batch_predict(
        self, model_id: str, dataset_id: str, *, idempotency_key: str | None = None
    ) -> BatchPrediction:
        body, headers = _batch_create(dataset_id, idempotency_key)
        created = await self._http.json("POST", _batch_path(model_id), json=body, headers=headers)
        return BatchPrediction.model_validate(created)

    async def get_batch_prediction(self, model_id: str, batch_id: str) -> BatchPrediction:
        body = await self._http.json("GET", _batch_path(model_id, batch_id))
        return BatchPrediction.model_validate(body)

    async def wait_batch_prediction(
        self,
        model_id: str,
        batch_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 0.5,
    ) -> BatchPrediction:
        deadline = _deadline(timeout)
        while _still_waiting(
            batch := await self.get_batch_prediction(model_id, batch_id), deadline
        ):
            await asyncio.sleep(poll_interval)
        return batch

    async def download_batch_output(
        self,
        model_id: str,
        batch_id: str,
        path: str | os.PathLike[str] | None = None,
        *,
        format: BatchOutputFormat = "parquet",
        progress: bool = False,
    ) -> Path:
        target = _destination(batch_id, path, format)
        url = f"{_batch_path(model_id, batch_id)}/output"
        return await self._save(url, format, target, progress)

    async def _save(self, url: str, format: str, target: Path, progress: bool) -> Path:
        partial = target.with_name(target.name + ".part")
        async with self._http.stream("GET", url, params={"format": format}) as response:
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

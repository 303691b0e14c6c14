"""`client.datasets`: upload (streamed from the file) or import from object storage,
list every page, read, preview, wait for ingest, delete."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from shardtrain._http import AsyncHTTP, SyncHTTP
from shardtrain.errors import WaitTimeoutError
from shardtrain.models import DATASET_TERMINAL, Dataset, DatasetDeleted, DatasetPreview, Page
from shardtrain.pagination import aiterate_pages, iterate_pages
from shardtrain.progress import CountingReader, TransferBar

PATH = "/v1/datasets"


def _upload_form(
    reader: CountingReader, filename: str, name: str | None
) -> tuple[dict[str, Any], dict[str, str]]:
    files = {"file": (filename, reader, "application/octet-stream")}
    return files, ({"name": name} if name is not None else {})


def _headers(idempotency_key: str | None) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key} if idempotency_key else {}


def _import_body(url: str, name: str | None) -> dict[str, Any]:
    return {"url": url, **({"name": name} if name is not None else {})}


def _timed_out(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() > deadline


class Datasets:
    def __init__(self, http: SyncHTTP) -> None:
        self._http = http

    def upload(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        progress: bool = False,
        idempotency_key: str | None = None,
    ) -> Dataset:
        """Stream the file to the server (never read whole into memory). The dataset comes
        back `processing`; `wait()` for `ready`. Retries send the same Idempotency-Key,
        so a retried upload never makes a second dataset."""
        file_path = Path(path)
        size = file_path.stat().st_size
        with (
            file_path.open("rb") as file,
            TransferBar(f"upload {file_path.name}", size, progress) as bar,
        ):
            files, data = _upload_form(CountingReader(file, bar), file_path.name, name)
            body = self._http.json(
                "POST", PATH, files=files, data=data, headers=_headers(idempotency_key)
            )
        return Dataset.model_validate(body)

    def import_url(
        self, url: str, *, name: str | None = None, idempotency_key: str | None = None
    ) -> Dataset:
        """Import an object (`s3://bucket/key`) that the server reads with its own
        credentials, from a prefix its operator allows; `wait()` for `ready`."""
        body = self._http.json(
            "POST", PATH, json=_import_body(url, name), headers=_headers(idempotency_key)
        )
        return Dataset.model_validate(body)

    def list_page(self, *, limit: int = 20, after: str | None = None) -> Page[Dataset]:
        body = self._http.json("GET", PATH, params={"limit": limit, "after": after})
        return Page[Dataset].model_validate(body)

    def list(self, *, limit: int = 20) -> Iterator[Dataset]:
        """Every dataset, newest first, fetching `limit` per page as the iteration goes."""
        return iterate_pages(lambda after: self.list_page(limit=limit, after=after))

    def get(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(self._http.json("GET", f"{PATH}/{dataset_id}"))

    def preview(self, dataset_id: str, *, limit: int = 20) -> DatasetPreview:
        body = self._http.json("GET", f"{PATH}/{dataset_id}/preview", params={"limit": limit})
        return DatasetPreview.model_validate(body)

    def delete(self, dataset_id: str) -> DatasetDeleted:
        return DatasetDeleted.model_validate(self._http.json("DELETE", f"{PATH}/{dataset_id}"))

    def wait(
        self, dataset_id: str, *, timeout: float | None = None, poll_interval: float = 0.5
    ) -> Dataset:
        """Poll until ingest ends; the dataset is then `ready` or `failed`."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            dataset = self.get(dataset_id)
            if dataset.status in DATASET_TERMINAL:
                return dataset
            if _timed_out(deadline):
                raise WaitTimeoutError(f"dataset {dataset_id} still {dataset.status}")
            time.sleep(poll_interval)


class AsyncDatasets:
    def __init__(self, http: AsyncHTTP) -> None:
        self._http = http

    async def upload(
        self,
        path: str | os.PathLike[str],
        *,
        name: str | None = None,
        progress: bool = False,
        idempotency_key: str | None = None,
    ) -> Dataset:
        file_path = Path(path)
        size = file_path.stat().st_size
        with (
            file_path.open("rb") as file,
            TransferBar(f"upload {file_path.name}", size, progress) as bar,
        ):
            files, data = _upload_form(CountingReader(file, bar), file_path.name, name)
            body = await self._http.json(
                "POST", PATH, files=files, data=data, headers=_headers(idempotency_key)
            )
        return Dataset.model_validate(body)

    async def import_url(
        self, url: str, *, name: str | None = None, idempotency_key: str | None = None
    ) -> Dataset:
        body = await self._http.json(
            "POST", PATH, json=_import_body(url, name), headers=_headers(idempotency_key)
        )
        return Dataset.model_validate(body)

    async def list_page(self, *, limit: int = 20, after: str | None = None) -> Page[Dataset]:
        body = await self._http.json("GET", PATH, params={"limit": limit, "after": after})
        return Page[Dataset].model_validate(body)

    def list(self, *, limit: int = 20) -> AsyncIterator[Dataset]:
        return aiterate_pages(lambda after: self.list_page(limit=limit, after=after))

    async def get(self, dataset_id: str) -> Dataset:
        return Dataset.model_validate(await self._http.json("GET", f"{PATH}/{dataset_id}"))

    async def preview(self, dataset_id: str, *, limit: int = 20) -> DatasetPreview:
        body = await self._http.json("GET", f"{PATH}/{dataset_id}/preview", params={"limit": limit})
        return DatasetPreview.model_validate(body)

    async def delete(self, dataset_id: str) -> DatasetDeleted:
        body = await self._http.json("DELETE", f"{PATH}/{dataset_id}")
        return DatasetDeleted.model_validate(body)

    async def wait(
        self, dataset_id: str, *, timeout: float | None = None, poll_interval: float = 0.5
    ) -> Dataset:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            dataset = await self.get(dataset_id)
            if dataset.status in DATASET_TERMINAL:
                return dataset
            if _timed_out(deadline):
                raise WaitTimeoutError(f"dataset {dataset_id} still {dataset.status}")
            await asyncio.sleep(poll_interval)

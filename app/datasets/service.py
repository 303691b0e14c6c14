"""Dataset use cases: store an upload, ingest it on a worker, read and list."""

import logging
from collections.abc import AsyncIterator, Mapping

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from app.datasets.ingest import IngestError, ingest_file
from app.datasets.repository import DatasetRepository
from app.datasets.upload import StoredUpload, receive_upload
from app.db import enqueue_after_commit
from app.dispatch import Dispatcher
from app.errors import NotFound
from app.models import Dataset
from app.models.base import new_id
from app.storage import BlobStore

logger = logging.getLogger(__name__)


async def upload_dataset(
    session: Session,
    store: BlobStore,
    dispatcher: Dispatcher,
    *,
    body: AsyncIterator[bytes],
    headers: Mapping[str, str],
    max_bytes: int,
) -> Dataset:
    """Stream the body into blob storage, record the dataset, queue its ingest."""
    dataset_id = new_id("ds")
    raw_key = f"datasets/{dataset_id}/raw"
    try:
        stored = await receive_upload(body, headers, store, raw_key, max_bytes=max_bytes)
        return await run_in_threadpool(_record_upload, session, dispatcher, dataset_id, stored)
    except BaseException:
        # Nothing half-stored survives a failed upload, not even its folder.
        store.delete_prefix(f"datasets/{dataset_id}")
        raise


def _record_upload(
    session: Session, dispatcher: Dispatcher, dataset_id: str, stored: StoredUpload
) -> Dataset:
    dataset = DatasetRepository(session).add(
        Dataset(
            id=dataset_id,
            # The file name is a label only: storage keys never derive from it.
            name=(stored.name or stored.filename or dataset_id)[:255],
            filename=stored.filename[:255],
            format=stored.format,
            bytes=stored.bytes,
            sha256=stored.sha256,
            status="processing",
            raw_key=f"datasets/{dataset_id}/raw",
        )
    )
    enqueue_after_commit(session, lambda: dispatcher.ingest(dataset_id))
    return dataset


def get_dataset(session: Session, dataset_id: str) -> Dataset:
    dataset = DatasetRepository(session).get(dataset_id)
    if dataset is None:
        raise NotFound("dataset", dataset_id)
    return dataset


def list_datasets(session: Session, *, limit: int, after: str | None) -> tuple[list[Dataset], bool]:
    return DatasetRepository(session).page(limit=limit, after=after)


def mark_failed(session: Session, dataset_id: str, message: str) -> None:
    dataset = DatasetRepository(session).get(dataset_id, for_update=True)
    if dataset is not None and dataset.status == "processing":
        dataset.status, dataset.error = "failed", message


def ingest_dataset(session: Session, store: BlobStore, dataset_id: str) -> None:
    """Worker side. Idempotent: a dataset that is no longer processing is left alone."""
    dataset = DatasetRepository(session).get(dataset_id, for_update=True)
    if dataset is None or dataset.status != "processing":
        return
    data_key = f"datasets/{dataset_id}/data.parquet"
    try:
        with store.temporary_path(data_key) as tmp:
            result = ingest_file(store.path(dataset.raw_key), dataset.format, tmp)
    except IngestError as exc:
        logger.info("dataset %s failed ingest: %s", dataset_id, exc)
        dataset.status, dataset.error = "failed", str(exc)
        return
    dataset.status = "ready"
    dataset.rows = result.rows
    dataset.columns = result.columns
    dataset.data_key = data_key

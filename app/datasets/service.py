"""Dataset use cases: store an upload, ingest it on a worker, read and list."""

import logging
from typing import BinaryIO

from sqlalchemy.orm import Session

from app.datasets.formats import UnsupportedFormat, detect_format
from app.datasets.ingest import IngestError, ingest_file
from app.datasets.repository import DatasetRepository
from app.db import enqueue_after_commit
from app.dispatch import Dispatcher
from app.errors import APIError, NotFound
from app.models import Dataset
from app.models.base import new_id
from app.storage import BlobStore

logger = logging.getLogger(__name__)


def store_upload(
    session: Session,
    store: BlobStore,
    dispatcher: Dispatcher,
    *,
    stream: BinaryIO,
    filename: str,
    name: str | None,
    max_bytes: int,
    chunk_bytes: int,
) -> Dataset:
    """Copy the upload to blob storage chunk by chunk, then queue its ingest."""
    dataset_id = new_id("ds")
    raw_key = f"datasets/{dataset_id}/raw"
    head = stream.read(chunk_bytes)
    if not head:
        raise APIError(422, "empty_file", "The uploaded file is empty.", "file")
    try:
        fmt = detect_format(filename, head)
    except UnsupportedFormat as exc:
        raise APIError(415, "unsupported_format", f"Unsupported file: {exc}.", "file") from exc
    try:
        with store.writer(raw_key) as out:
            chunk = head
            while chunk:
                if out.bytes_written + len(chunk) > max_bytes:
                    raise APIError(
                        413,
                        "file_too_large",
                        f"The file exceeds the upload limit of {max_bytes} bytes.",
                        "file",
                    )
                out.write(chunk)
                chunk = stream.read(chunk_bytes)
    except BaseException:
        # Nothing half-stored survives a failed upload, not even its folder.
        store.delete_prefix(f"datasets/{dataset_id}")
        raise
    dataset = Dataset(
        id=dataset_id,
        # The file name is a label only: storage keys never derive from it.
        name=(name or filename or dataset_id)[:255],
        filename=(filename or "")[:255],
        format=fmt,
        bytes=out.bytes_written,
        sha256=out.sha256.hexdigest(),
        status="processing",
        raw_key=raw_key,
    )
    try:
        DatasetRepository(session).add(dataset)
    except BaseException:
        store.delete_prefix(f"datasets/{dataset_id}")
        raise
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

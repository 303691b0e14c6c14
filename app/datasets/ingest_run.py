"""The worker's side of a dataset: count each ingest delivery, run the ingest, record
what it found, and clean up what a failed or killed ingest leaves on disk.

A delivery is counted in a transaction of its own that commits before any work starts.
A worker killed mid-ingest (the out-of-memory killer) records nothing else, so without
the count a file that kills every worker that reads it is redelivered forever, each
time leaving a half-written Parquet file behind.
"""

import errno
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from app.datasets.imports import copy_source, source_client
from app.datasets.ingest import IngestError, ingest_file
from app.datasets.repository import DatasetRepository
from app.db import enqueue_after_commit
from app.storage import BlobStore, keys
from app.tables import Dataset
from app.tables.statuses import DatasetStatus
from app.tenancy.scope import SYSTEM

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestOutcome:
    """What one ingest found, kept by the task so that a commit lost to a database
    restart can be recorded again without reading the file a second time."""

    rows: int = 0
    columns: list[dict[str, Any]] | None = None
    error: str | None = None
    # Of an imported object, known once the worker has copied it in.
    sha256: str | None = None


def worker_lost_message(lost: int) -> str:
    return (
        f"worker_lost: worker lost {lost} times while ingesting this file (its process "
        "was killed before it finished, as the out-of-memory killer does); upload it "
        "again, split into smaller files if this repeats, or give the workers more memory"
    )


def begin_ingest(
    session: Session, store: BlobStore, dataset_id: str, *, max_deliveries: int, grace_s: float
) -> bool:
    """Count this delivery; whether to go on with the ingest. Run in a transaction of
    its own, committed before the work starts. Every delivery before this one that is
    still `processing` was lost (killed, or cut off from the database), so once
    `max_deliveries` are used up the dataset fails instead of being tried again."""
    dataset = DatasetRepository(session, SYSTEM).get(dataset_id, for_update=True)
    if dataset is None or dataset.status != DatasetStatus.PROCESSING:
        return False
    dataset.ingest_deliveries += 1
    # The watchdog's clock restarts with each delivery: one just begun is not stalled.
    dataset.stage_started_at = time.time()
    lost = dataset.ingest_deliveries - 1
    if lost >= max_deliveries:
        logger.warning("dataset %s: worker lost %s times; failing it", dataset_id, lost)
        _fail(session, store, dataset, worker_lost_message(lost), grace_s=grace_s)
        return False
    # The killed predecessors' half-written files: removed now, not left to fill the disk.
    # A file whose writer is alive (a duplicate delivery still running) stays.
    removed = store.sweep_temp_files(keys.dataset_prefix(dataset_id), grace_s=grace_s)
    if removed:
        logger.info("dataset %s: removed %s abandoned temporary file(s)", dataset_id, len(removed))
    return True


def ingest_dataset(session: Session, store: BlobStore, dataset_id: str) -> IngestOutcome | None:
    """Ingest the dataset and record the outcome on its row, locked for the whole run
    (on PostgreSQL the watchdog skips a locked row, so a slow ingest is not re-sent).
    Idempotent: a dataset that is no longer processing is left alone (None)."""
    dataset = DatasetRepository(session, SYSTEM).get(dataset_id, for_update=True)
    if dataset is None or dataset.status != DatasetStatus.PROCESSING:
        return None
    sha256 = dataset.sha256
    try:
        if sha256 is None:
            sha256 = _copy_source(store, dataset)
        with store.temporary_path(keys.dataset_table(dataset_id)) as tmp:
            result = ingest_file(store.path(dataset.raw_key), dataset.format, tmp)
        outcome = IngestOutcome(rows=result.rows, columns=result.columns, sha256=sha256)
    except IngestError as exc:
        logger.info("dataset %s failed ingest: %s", dataset_id, exc)
        outcome = IngestOutcome(error=str(exc), sha256=sha256)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        # The server's condition, said as such rather than as an internal error; the
        # temporary file is already gone, so the disk is no fuller for the attempt.
        logger.error("dataset %s: storage full during ingest: %s", dataset_id, exc)
        outcome = IngestOutcome(
            error="the server's storage filled up while this file was converted; nothing "
            "is wrong with the file: upload it again once the operator has freed space"
        )
    _record(session, store, dataset, outcome)
    return outcome


def _copy_source(store: BlobStore, dataset: Dataset) -> str:
    """Copy an imported object into the dataset's raw blob; its sha256. A delivery that
    died mid-copy left no blob (the writer is atomic), so this one starts afresh."""
    assert dataset.source_url is not None and dataset.source_etag is not None
    with store.writer(dataset.raw_key) as out:
        copy_source(source_client(), dataset.source_url, dataset.source_etag, dataset.bytes, out)
    logger.info("dataset %s: copied %s (%s bytes)", dataset.id, dataset.source_url, dataset.bytes)
    return out.sha256.hexdigest()


def record_ingest(
    session: Session, store: BlobStore, dataset_id: str, outcome: IngestOutcome
) -> None:
    """Record an outcome whose first commit failed (the database restarted as the
    ingest ended); the Parquet file is already in place."""
    dataset = DatasetRepository(session, SYSTEM).get(dataset_id, for_update=True)
    if dataset is not None and dataset.status == DatasetStatus.PROCESSING:
        _record(session, store, dataset, outcome)


def _record(session: Session, store: BlobStore, dataset: Dataset, outcome: IngestOutcome) -> None:
    if outcome.sha256 is not None:
        dataset.sha256 = outcome.sha256
    if outcome.error is not None:
        _fail(session, store, dataset, outcome.error, grace_s=None)
        return
    dataset.status = DatasetStatus.READY
    dataset.rows = outcome.rows
    dataset.columns = outcome.columns
    dataset.data_key = keys.dataset_table(dataset.id)


def mark_failed(session: Session, store: BlobStore, dataset_id: str, message: str) -> None:
    dataset = DatasetRepository(session, SYSTEM).get(dataset_id, for_update=True)
    if dataset is not None and dataset.status == DatasetStatus.PROCESSING:
        _fail(session, store, dataset, message, grace_s=None)


def fail_dataset(session: Session, store: BlobStore, dataset: Dataset, message: str) -> None:
    """Fail a dataset whose ingest will not be tried again (the watchdog's verdict)."""
    _fail(session, store, dataset, message, grace_s=None)


def _fail(
    session: Session, store: BlobStore, dataset: Dataset, message: str, *, grace_s: float | None
) -> None:
    """Fail the dataset; once that commits, remove the Parquet file an earlier delivery
    may have put in place (its commit lost to a database outage) and, given a grace,
    the temporary files no live process will finish. The raw upload stays until the
    dataset is deleted."""
    dataset.status, dataset.error = DatasetStatus.FAILED, message
    dataset_id = dataset.id

    def remove_leftovers() -> None:
        store.delete(keys.dataset_table(dataset_id))
        if grace_s is not None:
            store.sweep_temp_files(keys.dataset_prefix(dataset_id), grace_s=grace_s)

    enqueue_after_commit(session, remove_leftovers)

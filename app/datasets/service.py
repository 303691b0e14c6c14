"""Dataset use cases: store an upload, ingest it on a worker, read and list."""

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from app.datasets.imports import ObjectURL, SourceObject, check_allowed, inspect_source

# The worker's side lives in ingest_run; these names are kept for its callers.
from app.datasets.ingest_run import ingest_dataset as ingest_dataset
from app.datasets.ingest_run import mark_failed as mark_failed
from app.datasets.preview import Preview, read_preview
from app.datasets.repository import DatasetRepository
from app.datasets.upload import StoredUpload, receive_upload
from app.db import enqueue_after_commit, session_scope
from app.dispatch import Dispatcher
from app.errors import APIError, NotFound
from app.idempotency import IdempotencyRepository
from app.jobs.lifecycle import fail
from app.jobs.repository import JobRepository
from app.outbox import send_after_commit
from app.storage import BlobStore, keys
from app.sweeps.repository import SweepRepository
from app.tables import Dataset
from app.tables.base import new_id, now_s
from app.tables.statuses import JOB_ACTIVE, DatasetStatus, JobStatus
from app.tenancy.limits import stored_bytes
from app.tenancy.repository import lock_tenant
from app.tenancy.scope import SYSTEM, Scope

logger = logging.getLogger(__name__)

# PostgreSQL's SQLSTATE for a NOWAIT lock on a row another transaction holds.
LOCK_NOT_AVAILABLE = "55P03"


async def upload_dataset(
    sessions: sessionmaker[Session],
    store: BlobStore,
    dispatcher: Dispatcher,
    *,
    tenant_id: str,
    body: AsyncIterator[bytes],
    headers: Mapping[str, str],
    max_bytes: int,
    max_stored_bytes: int | None = None,
    idempotency_key: str | None = None,
) -> Dataset:
    """Stream the body into blob storage, record the dataset, queue its ingest.

    No SQL connection is held while the body streams, for as long as a slow client
    takes: the reads before it and the record after it are short sessions of their own.
    Held across the stream, each upload kept a pooled connection idle in transaction,
    and a handful of slow clients starved every other request of the pool."""
    earlier, used = await run_in_threadpool(
        _before_stream, sessions, tenant_id, idempotency_key, max_stored_bytes
    )
    if earlier is not None:
        # A retried upload is not stored twice, and its body need not be read.
        return earlier
    quota_bound = False
    if max_stored_bytes is not None:
        room = max_stored_bytes - used
        if room <= 0:
            raise _storage_quota(max_stored_bytes, used)
        quota_bound = room < max_bytes
        max_bytes = min(max_bytes, room)
    dataset_id = new_id("ds")
    raw_key = keys.dataset_upload(dataset_id)
    try:
        try:
            stored = await receive_upload(body, headers, store, raw_key, max_bytes=max_bytes)
        except APIError as exc:
            if quota_bound and exc.code == "file_too_large":
                assert max_stored_bytes is not None
                raise _storage_quota(max_stored_bytes, max_stored_bytes - max_bytes) from exc
            raise

        def record() -> Dataset:
            with session_scope(sessions) as session:
                return _record_upload(
                    session,
                    dispatcher,
                    tenant_id,
                    dataset_id,
                    stored,
                    idempotency_key,
                    max_stored_bytes,
                )

        return await run_in_threadpool(record)
    except BaseException:
        # Nothing half-stored survives a failed upload, not even its folder.
        store.delete_prefix(keys.dataset_prefix(dataset_id))
        raise


def import_dataset(
    sessions: sessionmaker[Session],
    dispatcher: Dispatcher,
    source_client: Callable[[], Any],
    *,
    tenant_id: str,
    url: str,
    name: str | None,
    allowed_prefixes: list[str],
    max_bytes: int,
    max_stored_bytes: int | None = None,
    idempotency_key: str | None = None,
) -> Dataset:
    """Check an object by URL and record it as a dataset `processing`; the ingest worker
    copies it in. Nothing is stored before every check has passed, so a refused import
    leaves no row and no blob."""
    location = ObjectURL.parse(url)
    check_allowed(location, allowed_prefixes, tenant_id)
    earlier, _ = _before_stream(sessions, tenant_id, idempotency_key, None)
    if earlier is not None:
        return earlier
    source = inspect_source(source_client(), location, max_bytes=max_bytes)
    # The quota is counted once, under the tenant's lock, as the row is recorded.
    stored = StoredUpload(
        filename=location.filename, name=name, format=source.format, bytes=source.bytes
    )
    with session_scope(sessions) as session:
        return _record_upload(
            session,
            dispatcher,
            tenant_id,
            new_id("ds"),
            stored,
            idempotency_key,
            max_stored_bytes,
            source=source,
        )


def _before_stream(
    sessions: sessionmaker[Session],
    tenant_id: str,
    idempotency_key: str | None,
    max_stored_bytes: int | None,
) -> tuple[Dataset | None, int]:
    """The dataset an earlier request made under this Idempotency-Key, if any, and the
    bytes the tenant stores now (0 when there is no quota to check)."""
    with session_scope(sessions) as session:
        if idempotency_key is not None:
            earlier = IdempotencyRepository(session, tenant_id).find(
                "datasets.create", idempotency_key
            )
            if earlier is not None:
                return get_dataset(session, earlier, tenant_id), 0
        if max_stored_bytes is None:
            return None, 0
        return None, stored_bytes(session, tenant_id)


def _storage_quota(limit: int, used: int, param: str = "file") -> APIError:
    return APIError(
        409,
        "quota_exceeded",
        f"This dataset would pass this account's max_stored_bytes of {limit} "
        f"({used} already stored); delete datasets to make room.",
        param,
    )


def _record_upload(
    session: Session,
    dispatcher: Dispatcher,
    tenant_id: str,
    dataset_id: str,
    stored: StoredUpload,
    idempotency_key: str | None,
    max_stored_bytes: int | None = None,
    source: SourceObject | None = None,
) -> Dataset:
    if max_stored_bytes is not None:
        # The check before streaming let concurrent uploads each see the same room;
        # this one counts under the tenant's lock, held until the row commits.
        lock_tenant(session, tenant_id)
        used = stored_bytes(session, tenant_id)
        if used + stored.bytes > max_stored_bytes:
            raise _storage_quota(max_stored_bytes, used, "file" if source is None else "url")
    dataset = DatasetRepository(session, Scope.tenant(tenant_id)).add(
        Dataset(
            id=dataset_id,
            tenant_id=tenant_id,
            # The file name is a label only: storage keys never derive from it.
            name=(stored.name or stored.filename or dataset_id)[:255],
            filename=stored.filename[:255],
            format=stored.format,
            bytes=stored.bytes,
            sha256=stored.sha256,
            status=DatasetStatus.PROCESSING,
            raw_key=keys.dataset_upload(dataset_id),
            stage_started_at=time.time(),
            source_url=None if source is None else str(source.url),
            source_etag=None if source is None else source.etag,
        )
    )
    if idempotency_key is not None:
        IdempotencyRepository(session, tenant_id).remember(
            "datasets.create", idempotency_key, dataset_id
        )
    send_after_commit(session, dispatcher, "ingest", dataset_id=dataset_id)
    return dataset


def get_dataset(session: Session, dataset_id: str, tenant_id: str) -> Dataset:
    dataset = DatasetRepository(session, Scope.tenant(tenant_id)).get(dataset_id)
    if dataset is None:
        raise NotFound("dataset", dataset_id)
    return dataset


def delete_dataset(session: Session, store: BlobStore, dataset_id: str, tenant_id: str) -> None:
    """Remove the dataset's bytes and every shard cut from it. The row stays, marked
    deleted, because jobs and models refer to it; reads then answer 404."""
    repository = DatasetRepository(session, Scope.tenant(tenant_id))
    try:
        dataset = repository.get(dataset_id, for_update=True, nowait=True)
    except OperationalError as exc:
        if getattr(exc.orig, "sqlstate", None) != LOCK_NOT_AVAILABLE:
            raise
        # An ingest holds the row for its whole run (minutes, for a large file); waiting
        # for it would hold this request, and a pooled connection, as long.
        raise APIError(
            409,
            "dataset_busy",
            f"Dataset {dataset_id} is being ingested right now; try again once its "
            "ingest ends (it becomes ready or failed).",
            "id",
            headers={"Retry-After": "10"},
        ) from exc
    if dataset is None:
        raise NotFound("dataset", dataset_id)
    if dataset.status != DatasetStatus.READY:
        _fail_waiting_jobs(session, dataset)
    active = repository.job_ids(dataset_id, statuses=JOB_ACTIVE)
    if active:
        raise APIError(
            409,
            "dataset_in_use",
            f"Dataset {dataset_id} is used by unfinished job(s): {', '.join(active)}.",
            "id",
        )
    sweeps = SweepRepository(session, Scope.tenant(tenant_id)).on_dataset(dataset_id)
    if sweeps:
        raise APIError(
            409,
            "dataset_in_use",
            f"Dataset {dataset_id} is used by unfinished sweep(s): {', '.join(sweeps)}.",
            "id",
        )
    dataset.deleted_at = now_s()
    prefixes = [keys.dataset_prefix(dataset_id)]
    for job_id in repository.job_ids(dataset_id):
        prefixes += keys.job_dataset_copies(job_id)

    def remove_bytes() -> None:
        for prefix in prefixes:
            store.delete_prefix(prefix)

    enqueue_after_commit(session, remove_bytes)


def _fail_waiting_jobs(session: Session, dataset: Dataset) -> None:
    """Jobs on a dataset that never became ready are only waiting for it (prepare reads
    no bytes until it is `ready`): deleting it fails them rather than answering 409,
    which left a dataset stuck `processing` undeletable for as long as its job waited."""
    jobs = JobRepository(session, SYSTEM)
    for job_id in DatasetRepository(session, SYSTEM).job_ids(
        dataset.id, statuses=(JobStatus.QUEUED,)
    ):
        job = jobs.get(job_id, for_update=True)
        if job is not None and job.status == JobStatus.QUEUED:
            fail(
                job,
                "dataset_deleted",
                f"dataset {dataset.id} was deleted while {dataset.status}, before this job "
                "could start",
            )


def preview_dataset(
    session: Session, store: BlobStore, dataset_id: str, limit: int, tenant_id: str
) -> Preview:
    dataset = get_dataset(session, dataset_id, tenant_id)
    if dataset.status != DatasetStatus.READY or dataset.data_key is None:
        raise APIError(
            409,
            "dataset_not_ready",
            f"Dataset {dataset_id} is {dataset.status}; only a ready dataset has rows to show.",
            "id",
        )
    return read_preview(store.path(dataset.data_key), limit)


def list_datasets(
    session: Session, *, limit: int, after: str | None, tenant_id: str
) -> tuple[list[Dataset], bool]:
    return DatasetRepository(session, Scope.tenant(tenant_id)).page(limit=limit, after=after)

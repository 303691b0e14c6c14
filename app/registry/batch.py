"""Batch prediction: a deployed model over a whole dataset, on a worker, in record
batches, into a Parquet file with a row-id column."""

import time
from collections.abc import Iterator

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy.orm import Session

from app.datasets.repository import DatasetRepository
from app.dispatch import Dispatcher
from app.errors import APIError, NotFound
from app.idempotency import IdempotencyRepository, fingerprint
from app.outbox import send_after_commit
from app.registry.predictor import Predictor
from app.registry.repository import BatchPredictionRepository, ModelRepository
from app.registry.service import get_model
from app.storage import BlobStore, keys
from app.tables import BatchPrediction
from app.tables.base import now_s
from app.tables.statuses import BATCH_FINISHED, BatchStatus, DatasetStatus, ModelStatus
from app.tenancy.scope import SYSTEM, Scope

BATCH_ROWS = 65_536
NUMERIC = ("int", "float", "bool")


IDEMPOTENCY_ENDPOINT = "models.batch_predictions"


def create_batch_prediction(
    session: Session,
    dispatcher: Dispatcher,
    model_id: str,
    dataset_id: str,
    tenant_id: str,
    idempotency_key: str | None = None,
) -> BatchPrediction:
    request = fingerprint({"model_id": model_id, "dataset_id": dataset_id})
    keys = IdempotencyRepository(session, tenant_id)
    if idempotency_key is not None:
        earlier = keys.find(IDEMPOTENCY_ENDPOINT, idempotency_key, request)
        if earlier is not None:
            return get_batch_prediction(session, model_id, earlier, tenant_id)
    # Locked, so that a DELETE of the model waits for this row and then sees it queued.
    model = ModelRepository(session, Scope.tenant(tenant_id)).get(model_id, for_update=True)
    if model is None:
        raise NotFound("model", model_id)
    if model.status != ModelStatus.DEPLOYED:
        raise APIError(
            409, "model_not_deployed", f"Model {model_id} is {model.status}.", "model_id"
        )
    dataset = DatasetRepository(session, Scope.tenant(tenant_id)).get(dataset_id)
    if dataset is None:
        raise NotFound("dataset", dataset_id, param="dataset_id")
    if dataset.status != DatasetStatus.READY:
        raise APIError(
            409, "dataset_not_ready", f"Dataset {dataset_id} is {dataset.status}.", "dataset_id"
        )
    dtypes = {c["name"]: c["dtype"] for c in dataset.columns or []}
    for feature in model.features:
        name, wanted = feature["name"], feature["dtype"]
        if name not in dtypes:
            raise APIError(
                422, "missing_column", f"dataset lacks feature column {name!r}", "dataset_id"
            )
        if (wanted == "string") != (dtypes[name] == "string"):
            raise APIError(
                422,
                "column_type_mismatch",
                f"column {name!r} is {dtypes[name]} in the dataset but {wanted} in the model",
                "dataset_id",
            )
    job = BatchPrediction(
        tenant_id=tenant_id,
        model_id=model_id,
        dataset_id=dataset_id,
        status=BatchStatus.QUEUED,
        stage_started_at=time.time(),
    )
    session.add(job)
    session.flush()
    batch_id = job.id
    if idempotency_key is not None:
        keys.remember(IDEMPOTENCY_ENDPOINT, idempotency_key, batch_id, request)
    send_after_commit(session, dispatcher, "batch_predict", batch_id=batch_id)
    return job


def get_batch_prediction(
    session: Session, model_id: str, batch_id: str, tenant_id: str
) -> BatchPrediction:
    found = BatchPredictionRepository(session, Scope.tenant(tenant_id)).of_model(model_id, batch_id)
    if found is None:
        raise NotFound("batch prediction", batch_id)
    return found


def mark_running(session: Session, batch_id: str) -> None:
    """Committed on its own before the run, so clients can see the work has started."""
    job = BatchPredictionRepository(session, SYSTEM).get(batch_id, for_update=True)
    if job is not None and job.status == BatchStatus.QUEUED:
        job.status = BatchStatus.RUNNING


def run_batch_prediction(session: Session, store: BlobStore, batch_id: str) -> None:
    """Worker side. Idempotent: only a queued or interrupted run is (re)done, whole."""
    job = BatchPredictionRepository(session, SYSTEM).get(batch_id, for_update=True)
    if job is None or job.status in BATCH_FINISHED:
        return
    # The run's own tenant scopes what it reads: a worker never mixes two tenants' rows.
    model = get_model(session, job.model_id, job.tenant_id)
    dataset = DatasetRepository(session, Scope.tenant(job.tenant_id)).get(job.dataset_id)
    if dataset is None or dataset.data_key is None:
        job.status, job.error, job.finished_at = (
            BatchStatus.FAILED,
            "the dataset was deleted",
            now_s(),
        )
        return
    predictor = Predictor(store.path(model.artifact_key))
    dtypes = {f["name"]: f["dtype"] for f in model.features}
    key = keys.batch_predictions(batch_id)
    rows = 0
    with store.temporary_path(key) as tmp:
        writer: pq.ParquetWriter | None = None
        source = pq.ParquetFile(store.path(dataset.data_key), pre_buffer=False)
        for batch in source.iter_batches(batch_size=BATCH_ROWS, columns=list(dtypes)):
            table = predictor.predict_table(batch, dtypes, first_row=rows)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += batch.num_rows
        if writer is not None:
            writer.close()
    job.status, job.rows, job.output_key, job.finished_at = (
        BatchStatus.SUCCEEDED,
        rows,
        key,
        now_s(),
    )


def mark_failed(session: Session, batch_id: str, message: str) -> None:
    job = BatchPredictionRepository(session, SYSTEM).get(batch_id)
    if job is not None and job.status not in BATCH_FINISHED:
        job.status, job.error, job.finished_at = BatchStatus.FAILED, message, now_s()


def csv_chunks(store: BlobStore, key: str) -> Iterator[bytes]:
    """The Parquet output as CSV, converted one row group at a time."""
    source = pq.ParquetFile(store.path(key), pre_buffer=False)
    for i, batch in enumerate(source.iter_batches(batch_size=BATCH_ROWS)):
        sink = pa.BufferOutputStream()
        pacsv.write_csv(
            pa.Table.from_batches([batch]), sink, pacsv.WriteOptions(include_header=i == 0)
        )
        yield sink.getvalue().to_pybytes()

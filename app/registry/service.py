"""Registry use cases: read and list models, predict from a deployed one."""

from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session

from app.errors import APIError, NotFound
from app.jobs.events import record_event
from app.models import RegisteredModel
from app.models.base import now_s
from app.registry.artifact import read_artifact
from app.registry.inputs import InputError, table_to_features
from app.registry.onnx_graph import export_onnx
from app.registry.predictor import Prediction, Predictor, PredictorCache
from app.registry.repository import ModelRepository
from app.storage import BlobStore


def get_model(session: Session, model_id: str, tenant_id: str | None) -> RegisteredModel:
    model = ModelRepository(session, tenant_id).get(model_id)
    if model is None:
        raise NotFound("model", model_id)
    return model


def promote_model(session: Session, model_id: str, tenant_id: str | None) -> RegisteredModel:
    """Deploy a model its gate rejected. Idempotent; recorded as an event of its job."""
    model = ModelRepository(session, tenant_id).get(model_id, for_update=True)
    if model is None:
        raise NotFound("model", model_id)
    if model.status == "deployed":
        return model
    gate = model.gate or {}
    model.status = "deployed"
    model.gate = {**gate, "overridden_at": now_s()}
    record_event(
        session,
        model.job_id,
        "model.promoted",
        f"model {model_id} deployed by hand over its gate "
        f"({gate.get('metric')} = {gate.get('value')})",
        level="warning",
        model_id=model_id,
    )
    return model


def list_models(
    session: Session,
    *,
    limit: int,
    after: str | None,
    job_id: str | None,
    status: str | None,
    tenant_id: str | None,
) -> tuple[list[RegisteredModel], bool]:
    return ModelRepository(session, tenant_id).page(
        limit=limit, after=after, job_id=job_id, status=status
    )


def predict(
    session: Session,
    store: BlobStore,
    predictors: PredictorCache,
    model_id: str,
    records: list[dict[str, Any]],
    *,
    max_rows: int,
    tenant_id: str | None,
) -> Prediction:
    _, predictor = _deployed(
        session, store, predictors, model_id, len(records), max_rows, tenant_id
    )
    try:
        return predictor.predict(records)
    except InputError as exc:
        raise APIError(422, "invalid_input", exc.message, exc.param) from exc


def predict_table(
    session: Session,
    store: BlobStore,
    predictors: PredictorCache,
    model_id: str,
    table: pa.Table,
    *,
    max_rows: int,
    tenant_id: str | None,
) -> pa.Table:
    """Predictions for an Arrow table of raw columns, as a table shaped like a batch
    prediction's output (`row_id`, `prediction`, `probability_<class>`)."""
    model, predictor = _deployed(
        session, store, predictors, model_id, table.num_rows, max_rows, tenant_id
    )
    dtypes = {f["name"]: f["dtype"] for f in model.features}
    try:
        batch = table_to_features(table, dtypes)
        return predictor.predict_table(batch, dtypes, strict=True)
    except InputError as exc:
        raise APIError(422, "invalid_input", exc.message, exc.param) from exc


def _deployed(
    session: Session,
    store: BlobStore,
    predictors: PredictorCache,
    model_id: str,
    rows: int,
    max_rows: int,
    tenant_id: str | None,
) -> tuple[RegisteredModel, Predictor]:
    model = get_model(session, model_id, tenant_id)
    if rows > max_rows:
        raise APIError(
            413, "too_many_rows", f"{rows} rows exceed the limit of {max_rows}.", "inputs"
        )
    if model.status != "deployed":
        gate = model.gate or {}
        why = gate.get("reason") or (
            f"its {gate.get('metric', 'score')} of {gate.get('value')} did not pass"
        )
        raise APIError(
            409,
            "model_not_deployed",
            f"Model {model_id} is {model.status}: {why} (the job's deploy_if gate).",
            "model_id",
        )
    return model, predictors.get(model.id, store.path(model.artifact_key))


def onnx_path(store: BlobStore, model: RegisteredModel) -> Path:
    """The model's ONNX graph, exported on first request and kept beside the artifact."""
    key = f"models/{model.id}/model.onnx"
    if not store.exists(key):
        graph = export_onnx(read_artifact(store.path(model.artifact_key)))
        store.put_bytes(key, graph)
    return store.path(key)

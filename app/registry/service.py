"""Registry use cases: read and list models, predict from a deployed one."""

from typing import Any

import pyarrow as pa
from sqlalchemy import delete
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.database_health import DatabaseHealth, is_unavailable
from app.db import enqueue_after_commit, session_scope
from app.errors import APIError, DatabaseUnavailable, NotFound
from app.jobs.events import record_event
from app.jobs.repository import JobRepository
from app.model_names.aliases import check_unaliased
from app.model_names.service import add_version
from app.registry.artifact import read_artifact
from app.registry.inputs import InputError, table_to_features
from app.registry.known_models import DeployedModel, KnownModels
from app.registry.onnx_graph import export_onnx
from app.registry.predictor import Prediction, PredictorCache
from app.registry.repository import BatchPredictionRepository, ModelRepository
from app.registry.schemas import ModelDeletedOut, ModelOut
from app.storage import BlobStore, keys
from app.tables import BatchPrediction, IdempotencyKey, RegisteredModel
from app.tables.base import now_s
from app.tables.statuses import BATCH_ACTIVE, ModelStatus
from app.tenancy.scope import SYSTEM, Scope
from app.training.preprocessing import Preprocessor


def register_model(
    session: Session,
    *,
    model_id: str,
    job_id: str,
    tenant_id: str,
    task: str,
    model_type: str,
    preprocessor: Preprocessor,
    artifact_key: str,
    metrics: dict[str, float],
    gate: dict[str, Any] | None,
    comparison: dict[str, Any] | None = None,
    feature_importance: list[dict[str, Any]] | None = None,
    coefficients: list[dict[str, Any]] | None = None,
    model_name: str | None = None,
    deploy: bool = True,
) -> RegisteredModel:
    """Register a job's trained model: deployed, or rejected when its gate said why
    not (`gate["reason"]`), which is recorded as an event of the job. The artifact is
    already written; finalize calls this in the session that ends the job. With a
    `model_name`, it becomes that name's next version, whatever its gate said: a
    rejected version is kept and listed, only not served. A sweep's trial registers
    its model with `deploy=False`: the sweep deploys the best one."""
    rejection = gate["reason"] if gate is not None else None
    model = ModelRepository(session, Scope.tenant(tenant_id)).add(
        RegisteredModel(
            tenant_id=tenant_id,
            id=model_id,
            job_id=job_id,
            task=task,
            type=model_type,
            status=ModelStatus.REJECTED
            if rejection is not None
            else ModelStatus.DEPLOYED
            if deploy
            else ModelStatus.UNDEPLOYED,
            metrics=metrics,
            gate=gate,
            comparison=comparison,
            features=preprocessor.feature_schema,
            target=preprocessor.target.name,
            classes=preprocessor.target.classes,
            artifact_key=artifact_key,
            feature_importance=feature_importance,
            coefficients=coefficients,
        )
    )
    if model_name is not None:
        add_version(session, model, model_name)
    if rejection is not None:
        record_event(
            session,
            job_id,
            "model.rejected",
            f"model {model_id} not deployed: {rejection}",
            level="warning",
            model_id=model_id,
        )
    return model


def get_model(session: Session, model_id: str, tenant_id: str) -> RegisteredModel:
    model = ModelRepository(session, Scope.tenant(tenant_id)).get(model_id)
    if model is None:
        raise NotFound("model", model_id)
    return model


def promote_model(session: Session, model_id: str, tenant_id: str) -> RegisteredModel:
    """Deploy a model its gate rejected, or one undeployed by hand. Idempotent;
    recorded as an event of its job."""
    model = ModelRepository(session, Scope.tenant(tenant_id)).get(model_id, for_update=True)
    if model is None:
        raise NotFound("model", model_id)
    if model.status == ModelStatus.DEPLOYED:
        return model
    if model.status == ModelStatus.UNDEPLOYED:
        # Its gate was already decided (or overridden) when it was first deployed.
        model.status = ModelStatus.DEPLOYED
        record_event(
            session,
            model.job_id,
            "model.redeployed",
            f"model {model_id} deployed again by hand",
            model_id=model_id,
        )
        return model
    gate = model.gate or {}
    model.status = ModelStatus.DEPLOYED
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


def undeploy_model(session: Session, model_id: str, tenant_id: str) -> RegisteredModel:
    """Stop serving a model (predict and new batch predictions answer 409) without
    losing it: `deploy` brings it back. Idempotent; recorded as an event of its job."""
    model = ModelRepository(session, Scope.tenant(tenant_id)).get(model_id, for_update=True)
    if model is None:
        raise NotFound("model", model_id)
    if model.status == ModelStatus.DEPLOYED:
        model.status = ModelStatus.UNDEPLOYED
        record_event(
            session,
            model.job_id,
            "model.undeployed",
            f"model {model_id} undeployed by hand",
            model_id=model_id,
        )
    return model


def delete_model(
    session: Session, store: BlobStore, model_id: str, tenant_id: str
) -> ModelDeletedOut:
    """Delete a model, deployed or not, with its finished batch predictions and every
    blob of both. Refused while a batch prediction of it is queued or running, since
    that worker reads the artifact. The bytes go after the commit: a rollback must not
    leave a row whose artifact is gone."""
    model = ModelRepository(session, Scope.tenant(tenant_id)).get(model_id, for_update=True)
    if model is None:
        raise NotFound("model", model_id)
    check_unaliased(session, model)
    batches = BatchPredictionRepository(session, Scope.tenant(tenant_id)).of_model_all(model_id)
    active = [b.id for b in batches if b.status in BATCH_ACTIVE]
    if active:
        raise APIError(
            409,
            "model_in_use",
            f"Model {model_id} is used by unfinished batch prediction(s): {', '.join(active)}.",
            "id",
        )
    prefixes = [keys.model_prefix(model_id)] + [keys.batch_prefix(b.id) for b in batches]
    batch_ids = [b.id for b in batches]
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.object_id.in_(batch_ids)))
    session.execute(delete(BatchPrediction).where(BatchPrediction.model_id == model_id))
    record_event(
        session, model.job_id, "model.deleted", f"model {model_id} deleted", model_id=model_id
    )
    session.delete(model)
    session.flush()

    def remove_bytes() -> None:
        for prefix in prefixes:
            store.delete_prefix(prefix)

    enqueue_after_commit(session, remove_bytes)
    return ModelDeletedOut(id=model_id)


def model_out(session: Session, model: RegisteredModel) -> ModelOut:
    return models_out(session, [model])[0]


def models_out(session: Session, models: list[RegisteredModel]) -> list[ModelOut]:
    """The models as the API shows them, each with the dataset its job trained on (one
    query for the whole page)."""
    job_ids = {m.job_id for m in models}
    datasets = JobRepository(session, SYSTEM).dataset_ids(job_ids)
    fields = [name for name in ModelOut.model_fields if name not in ("object", "dataset_id")]
    return [
        ModelOut.model_validate(
            {**{name: getattr(m, name) for name in fields}, "dataset_id": datasets[m.job_id]}
        )
        for m in models
    ]


def list_models(
    session: Session,
    *,
    limit: int,
    after: str | None,
    job_id: str | None,
    status: str | None,
    tenant_id: str,
) -> tuple[list[RegisteredModel], bool]:
    return ModelRepository(session, Scope.tenant(tenant_id)).page_filtered(
        limit=limit, after=after, job_id=job_id, status=status
    )


def deployed_model(
    sessions: sessionmaker[Session],
    health: DatabaseHealth,
    known: KnownModels,
    model_id: str,
    *,
    rows: int,
    max_rows: int,
    tenant_id: str,
) -> DeployedModel:
    """The deployed model to predict with, read from SQL in a short session of its own
    (closed before the model runs). When SQL is unreachable, a model this process has
    served before is still known (KnownModels); any other answers 503."""
    try:
        with session_scope(sessions) as session:
            model = get_model(session, model_id, tenant_id)
            _check_servable(model, rows, max_rows)
            return known.remember(model)
    except SQLAlchemyError as exc:
        if not is_unavailable(exc):
            raise
        health.failed(exc)
        remembered = known.get(model_id, tenant_id)
        if remembered is None:
            raise DatabaseUnavailable() from None
        _check_rows(rows, max_rows)
        return remembered


def _check_rows(rows: int, max_rows: int) -> None:
    if rows > max_rows:
        raise APIError(
            413, "too_many_rows", f"{rows} rows exceed the limit of {max_rows}.", "inputs"
        )


def _check_servable(model: RegisteredModel, rows: int, max_rows: int) -> None:
    _check_rows(rows, max_rows)
    if model.status == ModelStatus.UNDEPLOYED:
        raise APIError(
            409,
            "model_not_deployed",
            f"Model {model.id} was undeployed; POST /v1/models/{model.id}/deploy serves it again.",
            "model_id",
        )
    if model.status != ModelStatus.DEPLOYED:
        gate = model.gate or {}
        why = gate.get("reason") or (
            f"its {gate.get('metric', 'score')} of {gate.get('value')} did not pass"
        )
        raise APIError(
            409,
            "model_not_deployed",
            f"Model {model.id} is {model.status}: {why} (the job's deploy_if gate).",
            "model_id",
        )


def predict(
    store: BlobStore,
    predictors: PredictorCache,
    model: DeployedModel,
    records: list[dict[str, Any]],
) -> Prediction:
    predictor = predictors.get(model.id, store.path(model.artifact_key))
    try:
        return predictor.predict(records)
    except InputError as exc:
        raise APIError(422, "invalid_input", exc.message, exc.param) from exc


def predict_table(
    store: BlobStore, predictors: PredictorCache, model: DeployedModel, table: pa.Table
) -> pa.Table:
    """Predictions for an Arrow table of raw columns, as a table shaped like a batch
    prediction's output (`row_id`, `prediction`, `probability_<class>`)."""
    predictor = predictors.get(model.id, store.path(model.artifact_key))
    try:
        batch = table_to_features(table, model.dtypes)
        return predictor.predict_table(batch, model.dtypes, strict=True)
    except InputError as exc:
        raise APIError(422, "invalid_input", exc.message, exc.param) from exc


def onnx_key(store: BlobStore, model: RegisteredModel) -> str:
    """The model's ONNX graph, exported on first request and kept beside the artifact."""
    key = keys.model_onnx(model.id)
    if not store.exists(key):
        graph = export_onnx(read_artifact(store.path(model.artifact_key)))
        store.put_bytes(key, graph)
    return key

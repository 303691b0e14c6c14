from typing import Annotated, Literal

from fastapi import APIRouter, Body, Depends, Query
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse

from app.deps import (
    DispatcherDep,
    SessionDep,
    StoreDep,
    TenantDep,
    rate_limit,
)
from app.errors import COMMON_ERROR_RESPONSES, APIError, ErrorResponse
from app.idempotency import IdempotencyKeyHeader
from app.registry import batch, service
from app.registry.schemas import (
    BatchPredictionCreate,
    BatchPredictionOut,
    ModelDeletedOut,
    ModelOut,
    PredictionOut,
)
from app.registry.serving import PREDICT_BODY, PREDICT_RESPONSES, ServingDep, serve_predict
from app.schemas import ListResponse
from app.storage import BlobStore
from app.tables.statuses import BatchStatus

router = APIRouter(prefix="/v1/models", tags=["models"], responses=COMMON_ERROR_RESPONSES)

_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No such model."}
}


@router.get(
    "", operation_id="models-list", summary="List models", response_model=ListResponse[ModelOut]
)
def list_models(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["deployed", "rejected", "undeployed"] | None = None,
) -> ListResponse[ModelOut]:
    """The tenant's models, newest first; filter by `job_id` or `status`."""
    rows, has_more = service.list_models(
        session, limit=limit, after=after, job_id=job_id, status=status, tenant_id=tenant
    )
    return ListResponse[ModelOut](data=service.models_out(session, rows), has_more=has_more)


@router.get(
    "/{model_id}",
    operation_id="models-get",
    summary="Read a model",
    response_model=ModelOut,
    responses=_NOT_FOUND,
)
def get_model(session: SessionDep, tenant: TenantDep, model_id: str) -> ModelOut:
    """A model's holdout metrics, gate decision, feature schema, target and classes."""
    return service.model_out(session, service.get_model(session, model_id, tenant))


@router.post(
    "/{model_id}/predict",
    operation_id="models-predict",
    summary="Predict from raw records",
    response_model=PredictionOut,
    responses={**PREDICT_RESPONSES, **_NOT_FOUND},
    dependencies=[Depends(rate_limit("predict"))],
    openapi_extra=PREDICT_BODY,
)
async def predict(serving: ServingDep, model_id: str) -> Response:
    """Apply the model's saved preprocessing to raw records and predict. Classification
    returns original label values and per-class probabilities. While the database is
    unreachable, a model this API process has already served goes on answering."""
    return await serve_predict(serving, lambda rows: serving.deployed(model_id, rows))


@router.post(
    "/{model_id}/deploy",
    operation_id="models-deploy",
    summary="Deploy a rejected model by hand",
    response_model=ModelOut,
    responses=_NOT_FOUND,
)
def deploy_model(session: SessionDep, tenant: TenantDep, model_id: str) -> ModelOut:
    """Overrides the job's deploy_if gate. Idempotent; the job's events record it."""
    return service.model_out(session, service.promote_model(session, model_id, tenant))


@router.post(
    "/{model_id}/undeploy",
    operation_id="models-undeploy",
    summary="Stop serving a model",
    response_model=ModelOut,
    responses=_NOT_FOUND,
)
def undeploy_model(session: SessionDep, tenant: TenantDep, model_id: str) -> ModelOut:
    """Predict and new batch predictions answer 409 `model_not_deployed` until
    `deploy` serves it again; batch predictions already sent finish. Idempotent (a
    rejected model stays rejected); the job's events record it."""
    return service.model_out(session, service.undeploy_model(session, model_id, tenant))


@router.delete(
    "/{model_id}",
    operation_id="models-delete",
    summary="Delete a model and its artifact",
    response_model=ModelDeletedOut,
    responses={
        **_NOT_FOUND,
        409: {
            "model": ErrorResponse,
            "description": "A batch prediction of the model is queued or running.",
        },
    },
)
def delete_model(
    session: SessionDep, tenant: TenantDep, store: StoreDep, model_id: str
) -> ModelDeletedOut:
    """Removes the model, deployed or not (it stops serving at once), its artifact, its
    ONNX graph and its batch predictions with their outputs. The job that trained it
    stays, and can be deleted next."""
    return service.delete_model(session, store, model_id, tenant)


@router.get(
    "/{model_id}/artifact",
    operation_id="models-artifact",
    summary="Download the model as safetensors",
    response_class=FileResponse,
    responses={
        **_NOT_FOUND,
        200: {
            "description": "A safetensors file; its metadata holds the network config, "
            "the preprocessing and the feature schema as JSON.",
            "content": {"application/octet-stream": {}},
        },
        307: {
            "description": "With S3 storage: the file's presigned URL (valid 15 minutes) "
            "in `Location`; the client downloads from the bucket."
        },
    },
)
def model_artifact(
    session: SessionDep,
    tenant: TenantDep,
    store: StoreDep,
    model_id: str,
    format: Literal["safetensors", "onnx"] = "safetensors",
) -> Response:
    """`?format=onnx`: the model with its preprocessing as one ONNX graph (see
    docs/artifacts.md for its inputs)."""
    model = service.get_model(session, model_id, tenant)
    if format == "onnx":
        return _download(
            store, service.onnx_key(store, model), f"{model.id}.onnx", "application/octet-stream"
        )
    return _download(
        store, model.artifact_key, f"{model.id}.safetensors", "application/octet-stream"
    )


def _download(store: BlobStore, key: str, filename: str, media_type: str) -> Response:
    """The blob streamed by the API, or, from object storage, a 307 to a presigned URL:
    the client then fetches it from the bucket itself."""
    url = store.download_url(key, filename=filename)
    if url is not None:
        return RedirectResponse(url, status_code=307)
    return FileResponse(store.path(key), media_type=media_type, filename=filename)


@router.post(
    "/{model_id}/batch_predictions",
    operation_id="models-batch-predictions-create",
    summary="Predict over a whole dataset, on a worker",
    status_code=201,
    response_model=BatchPredictionOut,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "Model not deployed or dataset not ready."},
        422: {"model": ErrorResponse, "description": "The dataset lacks a feature column."},
    },
    openapi_extra={"requestBody": {"description": "The ready dataset to predict over."}},
)
def create_batch_prediction(
    session: SessionDep,
    tenant: TenantDep,
    dispatcher: DispatcherDep,
    model_id: str,
    request: Annotated[BatchPredictionCreate, Body()],
    idempotency_key: IdempotencyKeyHeader = None,
) -> BatchPredictionOut:
    """Streams the dataset through the model in record batches; the output is Parquet
    with a `row_id` column (the row's position in the dataset). With an
    `Idempotency-Key`, a repeated request returns the batch prediction the first one
    made."""
    created = batch.create_batch_prediction(
        session, dispatcher, model_id, request.dataset_id, tenant, idempotency_key
    )
    return BatchPredictionOut.model_validate(created)


@router.get(
    "/{model_id}/batch_predictions/{batch_id}",
    operation_id="models-batch-predictions-get",
    summary="Read a batch prediction",
    response_model=BatchPredictionOut,
    responses=_NOT_FOUND,
)
def get_batch_prediction(
    session: SessionDep, tenant: TenantDep, model_id: str, batch_id: str
) -> BatchPredictionOut:
    """A batch prediction's status and, once succeeded, its row count."""
    return BatchPredictionOut.model_validate(
        batch.get_batch_prediction(session, model_id, batch_id, tenant)
    )


@router.get(
    "/{model_id}/batch_predictions/{batch_id}/output",
    operation_id="models-batch-predictions-output",
    summary="Download a batch prediction's output",
    response_class=Response,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The batch prediction has not succeeded."},
        200: {
            "description": "Parquet, or CSV with `?format=csv`.",
            "content": {
                "application/vnd.apache.parquet": {},
                "text/csv": {
                    "example": "row_id,prediction,probability_no,probability_yes\n0,yes,0.12,0.88\n"
                },
            },
        },
    },
)
def batch_prediction_output(
    session: SessionDep,
    tenant: TenantDep,
    store: StoreDep,
    model_id: str,
    batch_id: str,
    format: Literal["parquet", "csv"] = "parquet",
) -> Response:
    """The predictions of a succeeded batch prediction: Parquet (default) or
    CSV, one row per dataset row with its `row_id`."""
    found = batch.get_batch_prediction(session, model_id, batch_id, tenant)
    if found.status != BatchStatus.SUCCEEDED or found.output_key is None:
        raise APIError(
            409, "not_ready", f"Batch prediction {batch_id} is {found.status}.", "batch_id"
        )
    if format == "csv":
        return StreamingResponse(
            batch.csv_chunks(store, found.output_key),
            media_type="text/csv",
            headers={"content-disposition": f'attachment; filename="{batch_id}.csv"'},
        )
    return _download(
        store, found.output_key, f"{batch_id}.parquet", "application/vnd.apache.parquet"
    )

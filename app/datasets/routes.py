from typing import Annotated

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from app.datasets import service
from app.datasets.imports import source_client
from app.datasets.schemas import (
    DatasetDeletedOut,
    DatasetImport,
    DatasetOut,
    DatasetPreviewOut,
)
from app.datasets.upload import idle_bounded
from app.deps import (
    DispatcherDep,
    LimitsDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    TenantDep,
    rate_limit,
)
from app.errors import COMMON_ERROR_RESPONSES, APIError, ErrorResponse
from app.idempotency import IdempotencyKeyHeader
from app.schemas import ListResponse
from app.tenancy.upload_slots import UploadSlots

router = APIRouter(prefix="/v1/datasets", tags=["datasets"], responses=COMMON_ERROR_RESPONSES)

_ERRORS: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No such dataset."},
}


_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "A multipart form: the file (streamed to storage as it arrives) and an "
        "optional name. Or JSON naming an object to import from object storage, under a "
        "prefix the operator allows; the worker copies it in with the server's credentials.",
        "content": {
            "multipart/form-data": {
                "example": {"file": "iris.csv", "name": "iris"},
                "schema": {"$ref": "#/components/schemas/DatasetUpload"},
            },
            "application/json": {
                "example": {"url": "s3://datasets/iris/iris.csv", "name": "iris"},
                "schema": {"$ref": "#/components/schemas/DatasetImport"},
            },
        },
    }
}


@router.post(
    "",
    operation_id="datasets-create",
    summary="Upload a dataset",
    status_code=201,
    response_model=DatasetOut,
    openapi_extra=_UPLOAD_BODY,
    responses={
        400: {
            "model": ErrorResponse,
            "description": "The body ended before its closing boundary or its Content-Length "
            "(`truncated_body`); nothing was stored.",
        },
        403: {
            "model": ErrorResponse,
            "description": "An import whose URL is outside the prefixes the operator allows "
            "(`import_not_allowed`), or one the server's credentials may not read "
            "(`object_forbidden`).",
        },
        413: {"model": ErrorResponse, "description": "The file is over the upload limit."},
        415: {"model": ErrorResponse, "description": "Not CSV, Parquet or JSON Lines."},
        422: {
            "model": ErrorResponse,
            "description": "Empty file, bad form fields, or an import URL naming no object "
            "(`object_not_found`).",
        },
        502: {
            "model": ErrorResponse,
            "description": "Object storage refused an import's read for a reason of its own "
            "(`storage_error`, with its code).",
        },
        503: {
            "model": ErrorResponse,
            "description": "Object storage did not answer an import's checks, or answered "
            "5xx past every retry (`storage_unavailable`); nothing was recorded.",
        },
        408: {
            "model": ErrorResponse,
            "description": "The client sent nothing for `upload_idle_timeout_s` "
            "(`upload_timeout`); nothing was stored.",
        },
        409: {
            "model": ErrorResponse,
            "description": "Over this account's storage quota, or an imported object that "
            "changed while it was checked (`object_changed`).",
        },
        429: {
            "model": ErrorResponse,
            "description": "Over the upload rate limit (`rate_limited`), or as many uploads "
            "in progress as `max_concurrent_uploads` allows (`too_many_uploads`, refused "
            "before the body is read); `Retry-After` says when to retry.",
        },
        507: {
            "model": ErrorResponse,
            "description": "The server's storage filled up while the file was written "
            "(`insufficient_storage`); nothing was stored.",
        },
    },
    dependencies=[Depends(rate_limit("upload"))],
)
async def create_dataset(
    request: Request,
    tenant: TenantDep,
    limits: LimitsDep,
    store: StoreDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> DatasetOut:
    """Stream the file to storage, or name an object to import, and queue its ingest; the
    dataset is `processing` until a worker has parsed it into Parquet (`ready`) or found
    it unusable (`failed`, with `error` naming the line or column)."""
    if request.headers.get("content-type", "").split(";")[0].strip() == "application/json":
        return await _import_dataset(request, tenant, limits, dispatcher, settings, idempotency_key)
    # Taken before a byte of the body is read, so a refusal costs the client nothing.
    slots: UploadSlots = request.app.state.upload_slots
    lease = await run_in_threadpool(slots.acquire, tenant, limits.max_concurrent_uploads)
    try:
        # No SessionDep: its session would stay open, idle in transaction, for as long
        # as the body streams; the service opens short ones around its reads and writes.
        dataset = await service.upload_dataset(
            request.app.state.session_factory,
            store,
            dispatcher,
            tenant_id=tenant,
            body=lease.renewing(idle_bounded(request.stream(), settings.upload_idle_timeout_s)),
            headers=request.headers,
            max_bytes=settings.max_upload_bytes,
            max_stored_bytes=limits.max_stored_bytes,
            idempotency_key=idempotency_key,
        )
    except anyio.get_cancelled_exc_class():
        # Cancelled: uvicorn stopping past its graceful timeout, which exits without
        # waiting for a thread, so the slot is handed back here and now.
        lease.release()
        raise
    finally:
        if lease.held:
            await run_in_threadpool(lease.release)
    return DatasetOut.model_validate(dataset)


_MAX_IMPORT_BODY = 16 * 1024


async def _import_dataset(
    request: Request,
    tenant: str,
    limits: LimitsDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    idempotency_key: str | None,
) -> DatasetOut:
    raw = bytearray()
    # The upload path is exempt from the JSON body limit; this body is a URL and a name.
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > _MAX_IMPORT_BODY:
            raise APIError(
                413, "body_too_large", f"An import's body is at most {_MAX_IMPORT_BODY} bytes."
            )
    try:
        body = DatasetImport.model_validate_json(bytes(raw))
    except ValidationError as exc:
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        ) from None
    dataset = await run_in_threadpool(
        service.import_dataset,
        request.app.state.session_factory,
        dispatcher,
        source_client,
        tenant_id=tenant,
        url=body.url,
        name=body.name,
        allowed_prefixes=settings.import_allowed_prefixes,
        max_bytes=settings.max_upload_bytes,
        max_stored_bytes=limits.max_stored_bytes,
        idempotency_key=idempotency_key,
    )
    return DatasetOut.model_validate(dataset)


@router.get(
    "",
    operation_id="datasets-list",
    summary="List datasets",
    response_model=ListResponse[DatasetOut],
)
def list_datasets(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[DatasetOut]:
    """The tenant's datasets, newest first. Page with `after` (the last id seen)
    while `has_more` is true."""
    rows, has_more = service.list_datasets(session, limit=limit, after=after, tenant_id=tenant)
    return ListResponse[DatasetOut](
        data=[DatasetOut.model_validate(r) for r in rows], has_more=has_more
    )


@router.get(
    "/{dataset_id}",
    operation_id="datasets-get",
    summary="Read a dataset",
    response_model=DatasetOut,
    responses=_ERRORS,
)
def get_dataset(session: SessionDep, tenant: TenantDep, dataset_id: str) -> DatasetOut:
    """A dataset's status; once `ready`, its row count and typed columns with their
    missing-value counts."""
    return DatasetOut.model_validate(service.get_dataset(session, dataset_id, tenant))


@router.get(
    "/{dataset_id}/preview",
    operation_id="datasets-preview",
    summary="The first rows of a dataset",
    response_model=DatasetPreviewOut,
    responses={
        **_ERRORS,
        409: {"model": ErrorResponse, "description": "The dataset is not ready."},
    },
)
def preview_dataset(
    session: SessionDep,
    tenant: TenantDep,
    store: StoreDep,
    dataset_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 20,
) -> DatasetPreviewOut:
    """The first rows of a `ready` dataset, as parsed (types applied)."""
    preview = service.preview_dataset(session, store, dataset_id, limit, tenant)
    return DatasetPreviewOut(
        dataset_id=dataset_id, data=preview.rows, has_more=preview.total_rows > len(preview.rows)
    )


@router.delete(
    "/{dataset_id}",
    operation_id="datasets-delete",
    summary="Delete a dataset and its shards",
    response_model=DatasetDeletedOut,
    responses={
        **_ERRORS,
        409: {"model": ErrorResponse, "description": "An unfinished job still uses it."},
    },
)
def delete_dataset(
    session: SessionDep, tenant: TenantDep, store: StoreDep, dataset_id: str
) -> DatasetDeletedOut:
    """Remove the uploaded file, its Parquet copy and the shards cut from it. Models
    trained on it stay usable. Refused while a queued or running job uses it."""
    service.delete_dataset(session, store, dataset_id, tenant)
    return DatasetDeletedOut(id=dataset_id)

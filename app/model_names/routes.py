from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from app.deps import SessionDep, TenantDep, rate_limit
from app.errors import COMMON_ERROR_RESPONSES, ErrorResponse
from app.jobs.spec import MODEL_NAME_MAX, MODEL_NAME_PATTERN
from app.model_names import service
from app.model_names.schemas import ModelNameOut, ModelNameSummaryOut
from app.registry.known_models import DeployedModel
from app.registry.schemas import PredictionOut
from app.registry.serving import PREDICT_BODY, PREDICT_RESPONSES, ServingDep, serve_predict
from app.schemas import ListResponse

router = APIRouter(prefix="/v1/model-names", tags=["model-names"], responses=COMMON_ERROR_RESPONSES)

# SQL's INTEGER: a larger number is no version, and must not reach the database.
MAX_VERSION = 2**31 - 1
NameParam = Annotated[
    str, Path(min_length=1, max_length=MODEL_NAME_MAX, pattern=MODEL_NAME_PATTERN)
]


@router.get(
    "",
    operation_id="model-names-list",
    summary="List model names",
    response_model=ListResponse[ModelNameSummaryOut],
)
def list_model_names(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[ModelNameSummaryOut]:
    """The tenant's model names, newest first; pass the last one's `id` as `after` for
    the next page."""
    rows, has_more = service.list_model_names(session, limit=limit, after=after, tenant_id=tenant)
    return ListResponse[ModelNameSummaryOut](data=rows, has_more=has_more)


@router.get(
    "/{name}",
    operation_id="model-names-get",
    summary="Read a model name and its versions",
    response_model=ModelNameOut,
    responses={404: {"model": ErrorResponse, "description": "No model of that name."}},
)
def get_model_name(session: SessionDep, tenant: TenantDep, name: NameParam) -> ModelNameOut:
    """Every version that jobs with this `model_name` added, oldest first, each with
    its model, status, holdout metrics and gate decision."""
    return service.get_model_name(session, name, tenant)


@router.post(
    "/{name}/versions/{version}/predict",
    operation_id="model-names-predict-version",
    summary="Predict with a version of a named model",
    response_model=PredictionOut,
    responses={
        **PREDICT_RESPONSES,
        404: {"model": ErrorResponse, "description": "No such name, or no such version."},
    },
    dependencies=[Depends(rate_limit("predict"))],
    openapi_extra=PREDICT_BODY,
)
async def predict_version(
    serving: ServingDep,
    name: NameParam,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
) -> Response:
    """As `POST /v1/models/{model_id}/predict`, with the model that is `version` of
    `name`; the answer's `model_id` says which. The version must be deployed."""

    def deployed(rows: int) -> DeployedModel:
        model_id = service.version_model_id(
            serving.sessions, serving.health, name, version, serving.tenant
        )
        return serving.deployed(model_id, rows)

    return await serve_predict(serving, deployed)

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import Response

from app.deps import CallerDep, NameResolverDep, SessionDep, TenantDep, rate_limit
from app.errors import COMMON_ERROR_RESPONSES, ErrorResponse
from app.jobs.spec import MODEL_NAME_MAX, MODEL_NAME_PATTERN
from app.model_names import aliases, service
from app.model_names.schemas import (
    ALIAS_PATTERN,
    REASON_MAX,
    ModelAliasChangeOut,
    ModelAliasOut,
    ModelNameOut,
    ModelNameSummaryOut,
    SetAliasRequest,
)
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
AliasParam = Annotated[
    str,
    Path(
        min_length=1,
        max_length=MODEL_NAME_MAX,
        pattern=ALIAS_PATTERN,
        description="`champion` (moved by the champion gate, or by hand with a reason), "
        "or one of your own: a letter, then letters, digits, `_` or `-`.",
    ),
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such name, or no such version."}
}
_ALIAS_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No such name, or no such alias."}
}


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
    responses={**PREDICT_RESPONSES, **_NOT_FOUND},
    dependencies=[Depends(rate_limit("predict"))],
    openapi_extra=PREDICT_BODY,
)
async def predict_version(
    serving: ServingDep,
    resolver: NameResolverDep,
    name: NameParam,
    version: Annotated[int, Path(ge=1, le=MAX_VERSION)],
) -> Response:
    """As `POST /v1/models/{model_id}/predict`, with the model that is `version` of
    `name`; the answer's `model_id` says which. The version must be deployed."""

    def deployed(rows: int) -> DeployedModel:
        model_id = service.version_model_id(
            resolver, serving.sessions, serving.health, name, version, serving.tenant
        )
        return serving.deployed(model_id, rows)

    return await serve_predict(serving, deployed)


@router.post(
    "/{name}/aliases/{alias}/predict",
    operation_id="model-names-predict-alias",
    summary="Predict with the version an alias names",
    response_model=PredictionOut,
    responses={**PREDICT_RESPONSES, **_ALIAS_NOT_FOUND},
    dependencies=[Depends(rate_limit("predict"))],
    openapi_extra=PREDICT_BODY,
)
async def predict_alias(
    serving: ServingDep, resolver: NameResolverDep, name: NameParam, alias: AliasParam
) -> Response:
    """As `POST /v1/models/{model_id}/predict`, with the version `alias` names at the
    moment of the request (a move is seen by the next request, on every API process);
    the answer's `model_id` says which model answered."""

    def deployed(rows: int) -> DeployedModel:
        model_id = service.alias_model_id(
            resolver, serving.sessions, serving.health, name, alias, serving.tenant
        )
        return serving.deployed(model_id, rows)

    return await serve_predict(serving, deployed)


@router.put(
    "/{name}/aliases/{alias}",
    operation_id="model-names-set-alias",
    summary="Point an alias at a version (promote or roll back the champion)",
    response_model=ModelAliasOut,
    responses={
        **_NOT_FOUND,
        409: {
            "model": ErrorResponse,
            "description": "`champion` may only name a deployed version (`version_not_deployed`).",
        },
    },
    openapi_extra={
        "requestBody": {
            "description": "The version the alias is to name, and why (required to move "
            "`champion`)."
        }
    },
)
def set_alias(
    session: SessionDep,
    caller: CallerDep,
    resolver: NameResolverDep,
    name: NameParam,
    alias: AliasParam,
    body: SetAliasRequest,
) -> ModelAliasOut:
    """Create or move an alias. Moving `champion` by hand is a promotion or a rollback:
    it needs a `reason`, and the change records your key's id and that reason (see
    `GET /v1/model-names/{name}/alias-changes`). Setting the version it already names
    changes nothing."""
    moved = aliases.set_alias(
        session,
        resolver.generations,
        tenant_id=caller.tenant_id,
        name=name,
        alias=alias,
        version=body.version,
        set_by=caller.key_id,
        reason=body.reason,
    )
    return ModelAliasOut.model_validate(moved, from_attributes=True)


@router.delete(
    "/{name}/aliases/{alias}",
    operation_id="model-names-delete-alias",
    summary="Delete an alias",
    response_model=ModelAliasOut,
    responses=_ALIAS_NOT_FOUND,
)
def delete_alias(
    session: SessionDep,
    caller: CallerDep,
    resolver: NameResolverDep,
    name: NameParam,
    alias: AliasParam,
    reason: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=REASON_MAX,
            description="Why; kept in the alias's history. Required for `champion`.",
        ),
    ] = None,
) -> ModelAliasOut:
    """Remove the alias; predict by it answers 404 from the next request. Without a
    champion, the next `beats: "champion"` job is judged by its absolute gate alone.
    Answers the alias as it was."""
    removed = aliases.delete_alias(
        session,
        resolver.generations,
        tenant_id=caller.tenant_id,
        name=name,
        alias=alias,
        set_by=caller.key_id,
        reason=reason,
    )
    return ModelAliasOut.model_validate(removed, from_attributes=True)


@router.get(
    "/{name}/alias-changes",
    operation_id="model-names-alias-changes",
    summary="The history of a name's aliases",
    response_model=ListResponse[ModelAliasChangeOut],
    responses={404: {"model": ErrorResponse, "description": "No model of that name."}},
)
def list_alias_changes(
    session: SessionDep,
    tenant: TenantDep,
    name: NameParam,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[ModelAliasChangeOut]:
    """Every move of every alias, newest first: by whom (a key's id, or the job whose
    champion gate decided), from which version to which, and why."""
    rows, has_more = service.list_alias_changes(
        session, name, limit=limit, after=after, tenant_id=tenant
    )
    return ListResponse[ModelAliasChangeOut](data=rows, has_more=has_more)

from typing import Annotated, Literal

from fastapi import APIRouter, Body, Query

from app.deps import PredictorsDep, SessionDep, SettingsDep, StoreDep
from app.errors import ErrorResponse
from app.registry import service
from app.registry.schemas import ModelOut, PredictionOut, PredictRequest
from app.schemas import ListResponse

router = APIRouter(prefix="/v1/models", tags=["models"])

_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No such model."}
}


@router.get(
    "", operation_id="models-list", summary="List models", response_model=ListResponse[ModelOut]
)
def list_models(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
    job_id: Annotated[str | None, Query(max_length=64)] = None,
    status: Literal["deployed", "rejected"] | None = None,
) -> ListResponse[ModelOut]:
    rows, has_more = service.list_models(
        session, limit=limit, after=after, job_id=job_id, status=status
    )
    return ListResponse[ModelOut](
        data=[ModelOut.model_validate(m) for m in rows], has_more=has_more
    )


@router.get(
    "/{model_id}",
    operation_id="models-get",
    summary="Read a model",
    response_model=ModelOut,
    responses=_NOT_FOUND,
)
def get_model(session: SessionDep, model_id: str) -> ModelOut:
    return ModelOut.model_validate(service.get_model(session, model_id))


@router.post(
    "/{model_id}/predict",
    operation_id="models-predict",
    summary="Predict from raw records",
    response_model=PredictionOut,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The model is not deployed."},
        413: {"model": ErrorResponse, "description": "Too many rows in one request."},
        422: {"model": ErrorResponse, "description": "A record is missing a column or mistyped."},
    },
)
def predict(
    session: SessionDep,
    store: StoreDep,
    predictors: PredictorsDep,
    settings: SettingsDep,
    model_id: str,
    request: Annotated[PredictRequest, Body()],
) -> PredictionOut:
    """Apply the model's saved preprocessing to raw records and predict. Classification
    returns original label values and per-class probabilities."""
    result = service.predict(
        session,
        store,
        predictors,
        model_id,
        request.inputs,
        max_rows=settings.max_predict_rows,
    )
    return PredictionOut(
        model_id=model_id, predictions=result.predictions, probabilities=result.probabilities
    )

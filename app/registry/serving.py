"""Answering a predict request, whichever route named the model (`/v1/models/{id}` or
a named model's version): the body as JSON records or an Arrow IPC stream, the model
looked up once its row count is known, the answer in the body's own format.

The body is read and validated by pydantic-core straight from bytes, and the answer
serialised the same way: FastAPI's own JSON decode, model validation and
jsonable_encoder cost about 8x the model itself on a 10,000-row request."""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import pyarrow as pa
from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import ValidationError
from pydantic_core import to_json
from sqlalchemy.orm import Session, sessionmaker

from app.database_health import DatabaseHealth
from app.deps import (
    DatabaseHealthDep,
    KnownModelsDep,
    PredictorsDep,
    SettingsDep,
    StoreDep,
    TenantDep,
)
from app.errors import APIError, ErrorResponse
from app.openapi import PREDICT_BODY_REF
from app.registry import service
from app.registry.inputs import ARROW_STREAM, InputError, read_arrow_stream
from app.registry.known_models import DeployedModel, KnownModels
from app.registry.predictor import PredictorCache
from app.registry.schemas import PredictRequest
from app.storage import BlobStore

PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "description": "Raw records as column: value objects, or (with `Content-Type: "
        f"{ARROW_STREAM}`) an Arrow IPC stream of the raw columns; at most "
        "`SHARDTRAIN_MAX_PREDICT_ROWS` (10,000 by default) rows per request.",
        "content": {
            "application/json": {"schema": {"$ref": PREDICT_BODY_REF}},
            ARROW_STREAM: {"schema": {"type": "string", "format": "binary"}},
        },
    }
}
PREDICT_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "description": "Predictions: JSON for a JSON body; for an Arrow body, an Arrow "
        "IPC stream with `row_id`, `prediction` and a `probability_<class>` column per "
        "class (a batch prediction's columns).",
        "content": {ARROW_STREAM: {}},
    },
    409: {"model": ErrorResponse, "description": "The model is not deployed."},
    413: {"model": ErrorResponse, "description": "Too many rows in one request."},
    422: {"model": ErrorResponse, "description": "A record is missing a column or mistyped."},
    429: {"model": ErrorResponse, "description": "Over the predict rate limit."},
}


@dataclass(frozen=True)
class Serving:
    """What every predict route needs, whichever way it names the model."""

    request: Request
    tenant: str
    store: BlobStore
    predictors: PredictorCache
    known: KnownModels
    health: DatabaseHealth
    max_rows: int

    @property
    def sessions(self) -> sessionmaker[Session]:
        factory: sessionmaker[Session] = self.request.app.state.session_factory
        return factory

    def deployed(self, model_id: str, rows: int) -> DeployedModel:
        """The deployed model to answer `rows` rows with (see `service.deployed_model`)."""
        return service.deployed_model(
            self.sessions,
            self.health,
            self.known,
            model_id,
            rows=rows,
            max_rows=self.max_rows,
            tenant_id=self.tenant,
        )


def _serving(
    request: Request,
    tenant: TenantDep,
    store: StoreDep,
    predictors: PredictorsDep,
    known: KnownModelsDep,
    health: DatabaseHealthDep,
    settings: SettingsDep,
) -> Serving:
    return Serving(request, tenant, store, predictors, known, health, settings.max_predict_rows)


ServingDep = Annotated[Serving, Depends(_serving)]


async def serve_predict(serving: Serving, deployed: Callable[[int], DeployedModel]) -> Response:
    """`deployed(rows)` names the model to predict with, or raises the API's error."""
    http_request, store, predictors = serving.request, serving.store, serving.predictors
    raw = await http_request.body()
    media_type = http_request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == ARROW_STREAM:
        # Columns in, columns out: no per-row Python objects on either side.
        def run_arrow() -> bytes:
            try:
                table = read_arrow_stream(raw)
            except InputError as exc:
                raise APIError(422, "invalid_arrow", exc.message, None) from None
            result = service.predict_table(store, predictors, deployed(table.num_rows), table)
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, result.schema) as writer:
                writer.write_table(result)
            return bytes(sink.getvalue().to_pybytes())

        return Response(content=await run_in_threadpool(run_arrow), media_type=ARROW_STREAM)

    # Parsing, the lookup, the model and the answer's encoding in one trip to the
    # thread pool: each hop between the event loop and a worker thread shows in the
    # latency, and a large body parsed on the event loop would stall every other request.
    def run() -> bytes:
        try:
            request = PredictRequest.model_validate_json(raw)
        except ValidationError as exc:
            raise RequestValidationError(
                [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
            ) from None
        model = deployed(len(request.inputs))
        result = service.predict(store, predictors, model, request.inputs)
        # The outputs were checked finite (a non-finite row is a 422 naming it); "null"
        # is the last guard, as to_json's default writes NaN and Infinity, which are
        # not JSON.
        return to_json(
            {
                "object": "prediction",
                "model_id": model.id,
                "predictions": result.predictions,
                "probabilities": result.probabilities,
            },
            inf_nan_mode="null",
        )

    return Response(content=await run_in_threadpool(run), media_type="application/json")

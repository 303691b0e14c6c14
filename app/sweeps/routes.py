import dataclasses
import json
import time
from functools import lru_cache
from typing import Annotated

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from app.deps import DispatcherDep, LimitsDep, SessionDep, TenantDep
from app.errors import COMMON_ERROR_RESPONSES, ErrorResponse
from app.idempotency import IdempotencyKeyHeader
from app.schemas import ListResponse
from app.sweeps import service
from app.sweeps.charts import TrialPoint, render_trials_chart
from app.sweeps.importance import param_importances
from app.sweeps.live import stream_sweep_events
from app.sweeps.schemas import SweepEventOut, SweepOut, TrialOut
from app.sweeps.search import TrialRecord
from app.sweeps.spec import SweepSpec
from app.sweeps.step import records

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"], responses=COMMON_ERROR_RESPONSES)

_NOT_FOUND: dict[int | str, dict[str, object]] = {
    404: {"model": ErrorResponse, "description": "No such sweep."}
}


@router.post(
    "",
    operation_id="sweeps-create",
    summary="Start a hyperparameter sweep",
    status_code=201,
    response_model=SweepOut,
    responses={
        404: {"model": ErrorResponse, "description": "The template's dataset does not exist."},
        409: {"model": ErrorResponse, "description": "The dataset is not ready."},
        422: {
            "model": ErrorResponse,
            "description": "The template, a dimension or a value it can draw does not make a "
            "job the dataset takes; `param` names it (`template.…`, `space.…`).",
        },
        429: {
            "model": ErrorResponse,
            "description": "The sweep's parallelism does not fit the running-job quota.",
        },
    },
    openapi_extra={
        "requestBody": {
            "description": "A job spec template, the space trials draw from, the metric, "
            "the budget and the seed."
        }
    },
)
def create_sweep(
    session: SessionDep,
    tenant: TenantDep,
    dispatcher: DispatcherDep,
    limits: LimitsDep,
    spec: Annotated[SweepSpec, Body()],
    idempotency_key: IdempotencyKeyHeader = None,
) -> SweepOut:
    """Trials are jobs on one preparation of the data, asked for by optuna (TPE, or
    random search) up to `parallelism` at once and pruned on their validation loss
    per round. When the budget is spent, the best trial's model is the result; with a
    `model_name` or `deploy_if` in the template, or with `cv_folds`, a final job trains
    the best settings and its model goes through the gate."""
    sweep = service.create_sweep(session, dispatcher, spec, tenant, limits, idempotency_key)
    return service.sweep_out(session, sweep)


@router.get(
    "", operation_id="sweeps-list", summary="List sweeps", response_model=ListResponse[SweepOut]
)
def list_sweeps(
    session: SessionDep,
    tenant: TenantDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[SweepOut]:
    """The tenant's sweeps, newest first, each with its trials."""
    rows, has_more = service.list_sweeps(session, limit=limit, after=after, tenant_id=tenant)
    return ListResponse[SweepOut](
        data=[service.sweep_out(session, s) for s in rows], has_more=has_more
    )


@router.get(
    "/{sweep_id}",
    operation_id="sweeps-get",
    summary="Read a sweep",
    response_model=SweepOut,
    responses=_NOT_FOUND,
)
def get_sweep(session: SessionDep, tenant: TenantDep, sweep_id: str) -> SweepOut:
    """Its status, every trial (params, score, state, job, seconds) and the best one."""
    return service.sweep_out(session, service.get_sweep(session, sweep_id, tenant))


@router.get(
    "/{sweep_id}/trials",
    operation_id="sweeps-trials",
    summary="A sweep's trials",
    response_model=ListResponse[TrialOut],
    responses=_NOT_FOUND,
)
def sweep_trials(session: SessionDep, tenant: TenantDep, sweep_id: str) -> ListResponse[TrialOut]:
    """Every trial, by number: what `GET /v1/sweeps/{id}` lists, alone."""
    sweep = service.get_sweep(session, sweep_id, tenant)
    now = time.time()
    trials = [service.trial_out(t, now) for t in service.trials_of(session, sweep)]
    return ListResponse[TrialOut](data=trials, has_more=False)


@router.post(
    "/{sweep_id}/cancel",
    operation_id="sweeps-cancel",
    summary="Cancel a sweep and its trials",
    response_model=SweepOut,
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorResponse, "description": "The sweep already succeeded or failed."},
    },
)
def cancel_sweep(
    session: SessionDep, tenant: TenantDep, dispatcher: DispatcherDep, sweep_id: str
) -> SweepOut:
    """Idempotent. Every running trial's job is cancelled (its queued shard tasks
    revoked) and no new trial starts; done trials and their models stay."""
    sweep = service.cancel_sweep(session, dispatcher, sweep_id, tenant)
    return service.sweep_out(session, sweep)


@router.get(
    "/{sweep_id}/events",
    operation_id="sweeps-events",
    summary="A sweep's events, or a live stream of them",
    response_model=ListResponse[SweepEventOut],
    responses={
        **_NOT_FOUND,
        200: {
            "description": "The events, oldest first. With `Accept: text/event-stream`, "
            "a server-sent event stream that ends when the sweep does.",
            "content": {
                "text/event-stream": {
                    "schema": {"type": "string"},
                    "example": "id: evt_2c3d4e5f6a7b8c9d0e1f2a3b\nevent: trial.done\n"
                    'data: {"id": "evt_2c3d4e5f6a7b8c9d0e1f2a3b", "type": "trial.done", '
                    '"message": "trial 3 done: score 0.962"}\n\n',
                }
            },
        },
    },
)
def sweep_events(
    request: Request,
    session: SessionDep,
    tenant: TenantDep,
    sweep_id: str,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    after: Annotated[str | None, Query(max_length=64)] = None,
) -> ListResponse[SweepEventOut] | EventSourceResponse:
    """Trials started, done, pruned and failed, the best trial and the end, oldest
    first, paged with `after`; `Accept: text/event-stream` follows them live."""
    rows, has_more = service.list_events(
        session, sweep_id, limit=limit, after=after, tenant_id=tenant
    )
    if "text/event-stream" in request.headers.get("accept", ""):
        return EventSourceResponse(
            stream_sweep_events(
                request.app.state.sweep_notifier,
                sweep_id,
                after or request.headers.get("last-event-id"),
            ),
            ping=request.app.state.settings.sse_ping_s,
        )
    return ListResponse[SweepEventOut](data=rows, has_more=has_more)


@lru_cache(maxsize=64)
def _chart(
    points: tuple[TrialPoint, ...],
    importances: tuple[tuple[str, float], ...] | None,
    title: str,
    metric: str,
    maximize: bool,
) -> bytes:
    return render_trials_chart(
        points,
        dict(importances) if importances is not None else None,
        title=title,
        metric=metric,
        maximize=maximize,
    )


@lru_cache(maxsize=64)
def _importances(spec_json: str, done_json: str) -> tuple[tuple[str, float], ...] | None:
    """fANOVA fits a forest (tenths of a second): once per set of done trials."""
    spec = SweepSpec.model_validate_json(spec_json)
    done = [TrialRecord(**r) for r in json.loads(done_json)]
    found = param_importances(spec, done)
    return tuple(found.items()) if found is not None else None


@router.get(
    "/{sweep_id}/trials.png",
    operation_id="sweeps-trials-chart",
    summary="Score against trial, with parameter importances, as a PNG image",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "Each done trial's score (± its folds' deviation), the best so far, "
            "pruned and failed trials marked, and optuna's fANOVA importance of each "
            "dimension once three trials are done.",
        },
        404: {"model": ErrorResponse, "description": "No such sweep."},
    },
)
def sweep_trials_chart(session: SessionDep, tenant: TenantDep, sweep_id: str) -> Response:
    """The trials of `GET /v1/sweeps/{id}`, drawn."""
    sweep = service.get_sweep(session, sweep_id, tenant)
    spec = SweepSpec.model_validate(sweep.spec)
    trials = service.trials_of(session, sweep)
    done = [dataclasses.asdict(r) for r in records(trials) if r.state == "done"]
    png = _chart(
        tuple(TrialPoint(t.number, t.state, t.score, t.score_std) for t in trials),
        _importances(json.dumps(sweep.spec, sort_keys=True), json.dumps(done, sort_keys=True)),
        f"{sweep_id}: {spec.metric} per trial",
        spec.metric,
        spec.maximize,
    )
    return Response(content=png, media_type="image/png", headers={"Cache-Control": "no-store"})

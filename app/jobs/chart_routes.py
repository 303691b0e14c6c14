from functools import lru_cache

from fastapi import APIRouter
from fastapi.responses import Response

from app.deps import SessionDep, TenantDep
from app.errors import COMMON_ERROR_RESPONSES, ErrorResponse
from app.jobs import service
from app.jobs.charts import LossPoint, render_loss_chart

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], responses=COMMON_ERROR_RESPONSES)


# A render costs tens of milliseconds of a thread-pool thread; dashboards poll the same
# job again and again, and the image changes only when a round is merged.
@lru_cache(maxsize=128)
def _chart(points: tuple[LossPoint, ...], title: str) -> bytes:
    return render_loss_chart(points, title=title)


@router.get(
    "/{job_id}/metrics.png",
    operation_id="jobs-metrics-chart",
    summary="Loss curves as a PNG image",
    response_class=Response,
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "Train and validation loss per round. A job with no merged "
            "round yet gets an image that says so.",
        },
        404: {"model": ErrorResponse, "description": "No such job."},
    },
)
def job_metrics_chart(session: SessionDep, tenant: TenantDep, job_id: str) -> Response:
    """The numbers of `GET /v1/jobs/{job_id}/metrics`, drawn: the merged train loss
    (weighted by shard examples) and the validation loss of every round so far."""
    rounds = service.round_metrics(session, job_id, tenant)
    png = _chart(
        tuple(LossPoint(r.round, r.train_loss, r.val_loss) for r in rounds),
        f"{job_id}: loss per round",
    )
    # Each merged round changes the image, so a cached copy would hide progress.
    return Response(content=png, media_type="image/png", headers={"Cache-Control": "no-store"})

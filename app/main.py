"""create_app(): routers, error handlers, shared state. Run with
``uvicorn app.main:create_app --factory``."""

from typing import Any

import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.body_limit import BodyLimitMiddleware
from app.config import Settings, get_settings
from app.datasets.routes import router as datasets_router
from app.db import session_factory
from app.dispatch import Dispatcher
from app.errors import ErrorResponse, UnhandledErrorMiddleware, install_error_handlers
from app.fleet import WorkerRegistry
from app.jobs.chart_routes import router as job_charts_router
from app.jobs.routes import router as jobs_router
from app.observability.exposition import install_metrics
from app.observability.logging import configure_logging
from app.openapi import TAGS, install_openapi
from app.registry.predictor import PredictorCache
from app.registry.routes import router as models_router
from app.storage import BlobStore
from app.tenancy.limits import RateLimiter
from workers.celery_app import create_celery

DESCRIPTION = """
Upload a dataset, post a job spec, and Shardtrain splits the rows into disjoint
shards, trains one shard per worker, merges the parameters round after round
(FedAvg), scores the merged model on a holdout and deploys it if it passes the
job's gate. Errors are `{"error": {type, code, message, param}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_format)
    app = FastAPI(title="Shardtrain", version="0.1.0", description=DESCRIPTION, openapi_tags=TAGS)
    app.state.settings = settings
    app.state.session_factory = session_factory(settings.database_url)
    app.state.store = BlobStore(settings.blob_dir)
    app.state.dispatcher = Dispatcher(create_celery(settings))
    app.state.predictors = PredictorCache(settings.model_cache_size)
    # A short connect timeout: the rate limiter and the fleet lookup sit on request
    # paths, and a Redis host that drops packets must not hold a request for long.
    shared_redis = redis.Redis.from_url(
        settings.broker_url, socket_timeout=5, socket_connect_timeout=1
    )
    app.state.fleet = WorkerRegistry(shared_redis)
    app.state.rate_limiter = RateLimiter(shared_redis)
    install_error_handlers(app)
    # Added first, so innermost: the body limit and the metrics see its 500 like any answer.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_json_body_bytes)
    # Added last, so outermost: it times and labels even the requests refused above.
    install_metrics(app, app.state.session_factory, shared_redis)
    app.include_router(datasets_router)
    app.include_router(jobs_router)
    app.include_router(job_charts_router)
    app.include_router(models_router)
    install_openapi(app)

    @app.get(
        "/healthz",
        operation_id="health-live",
        tags=["health"],
        summary="Liveness",
        responses={200: {"content": {"application/json": {"example": {"status": "ok"}}}}},
    )
    def healthz() -> dict[str, str]:
        """The process answers; it checks nothing else (see /readyz)."""
        return {"status": "ok"}

    @app.get(
        "/readyz",
        operation_id="health-ready",
        tags=["health"],
        summary="Readiness: SQL and Redis answer",
        responses={
            200: {
                "description": "SQL and Redis both answer.",
                "content": {
                    "application/json": {
                        "example": {
                            "status": "ready",
                            "checks": {"database": "ok", "redis": "ok"},
                        }
                    }
                },
            },
            503: {"model": ErrorResponse, "description": "A dependency is down."},
        },
    )
    def readyz() -> Any:
        """Whether this API process can reach PostgreSQL (or SQLite) and Redis now."""
        checks: dict[str, str] = {}
        try:
            with app.state.session_factory() as session:
                session.execute(text("SELECT 1"))
            checks["database"] = "ok"
        except Exception as exc:  # readiness reports any failure, whatever its kind
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            redis.Redis.from_url(settings.broker_url, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        ready = all(v == "ok" for v in checks.values())
        if not ready:
            failing = ", ".join(k for k, v in checks.items() if v != "ok")
            return JSONResponse(
                status_code=503,
                content={
                    "error": {
                        "type": "api_error",
                        "code": "not_ready",
                        "message": f"Not ready: {failing} unreachable.",
                        "param": None,
                    }
                },
            )
        return {"status": "ready", "checks": checks}

    return app

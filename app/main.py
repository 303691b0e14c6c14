"""create_app(): routers, error handlers, shared state. Run with
``uvicorn app.main:create_app --factory``."""

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import redis
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.body_limit import BodyLimitMiddleware
from app.config import Settings, get_settings
from app.database_health import is_unavailable as is_database_unavailable
from app.database_health import watch as watch_database
from app.datasets.orphans import sweep_in_background
from app.datasets.routes import router as datasets_router
from app.db import session_factory
from app.deps import KnownKeys
from app.dispatch import Dispatcher
from app.docs_ui import install_docs
from app.errors import ErrorResponse, UnhandledErrorMiddleware, install_error_handlers
from app.fleet import WorkerRegistry
from app.jobs.chart_routes import router as job_charts_router
from app.jobs.live import EventNotifier
from app.jobs.routes import router as jobs_router
from app.messaging import create_celery
from app.model_names.resolution import AliasGenerations, NameResolver
from app.model_names.routes import router as model_names_router
from app.nul_url_middleware import NulCharacterMiddleware
from app.observability.beat_heartbeat import STALE_AFTER_INTERVALS, BeatMonitor
from app.observability.exposition import install_metrics
from app.observability.logging import configure_logging
from app.openapi import TAGS, install_openapi
from app.registry.known_models import KnownModels
from app.registry.predictor import PredictorCache
from app.registry.routes import router as models_router
from app.storage import open_store
from app.sweeps.live import sweep_notifier
from app.sweeps.routes import router as sweeps_router
from app.tenancy.limits import RateLimiter
from app.tenancy.upload_slots import UploadSlots, lease_seconds
from app.ui.routes import install_ui

DESCRIPTION = """
Upload a dataset, post a job spec, and Shardtrain splits the rows into disjoint
shards, trains one shard per worker, merges the parameters round after round
(FedAvg), scores the merged model on a holdout and deploys it if it passes the
job's gate. Errors are `{"error": {type, code, message, param}}`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    configure_logging(settings.log_format)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # What a killed API or worker left in blob storage (issue 13: debris survived
        # restarts); in a thread, so a large store does not delay serving.
        sweep_in_background(settings.database_url, app.state.store, settings.orphan_grace_s)
        beat_watch = asyncio.create_task(app.state.beat_monitor.watch(settings.watchdog_interval_s))
        yield
        beat_watch.cancel()
        # The event streams' shared poller stops with the app, not with the process.
        await app.state.event_notifier.aclose()
        await app.state.sweep_notifier.aclose()

    app = FastAPI(
        title="Shardtrain",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        # Served by install_docs from this app's own assets, so they work offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.session_factory = session_factory(settings.database_url)
    app.state.event_notifier = EventNotifier(app.state.session_factory)
    app.state.sweep_notifier = sweep_notifier(app.state.session_factory)
    app.state.store = open_store(settings)
    app.state.dispatcher = Dispatcher(create_celery(settings))
    app.state.predictors = PredictorCache(settings.model_cache_size)
    # During a database outage: one log line per outage, and predict served from memory.
    app.state.database_health = watch_database(app.state.session_factory.kw["bind"])
    app.state.known_keys = KnownKeys(settings.outage_key_cache_s)
    app.state.known_models = KnownModels()
    # A short connect timeout: the rate limiter and the fleet lookup sit on request
    # paths, and a Redis host that drops packets must not hold a request for long.
    shared_redis = redis.Redis.from_url(
        settings.broker_url, socket_timeout=5, socket_connect_timeout=1
    )
    app.state.fleet = WorkerRegistry(shared_redis)
    app.state.beat_monitor = BeatMonitor(
        shared_redis, STALE_AFTER_INTERVALS * settings.watchdog_interval_s
    )
    app.state.rate_limiter = RateLimiter(shared_redis)
    app.state.name_resolver = NameResolver(AliasGenerations(shared_redis), settings.alias_cache_s)
    app.state.upload_slots = UploadSlots(
        shared_redis, lease_seconds(settings.upload_idle_timeout_s)
    )
    install_error_handlers(app)
    # Added first, so innermost: the body limit and the metrics see its 500 like any answer.
    app.add_middleware(UnhandledErrorMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_json_body_bytes)
    app.add_middleware(NulCharacterMiddleware)
    # Added last, so outermost: it times and labels even the requests refused above.
    install_metrics(app, app.state.session_factory, shared_redis)
    app.include_router(datasets_router)
    app.include_router(jobs_router)
    app.include_router(job_charts_router)
    app.include_router(models_router)
    app.include_router(model_names_router)
    app.include_router(sweeps_router)
    install_openapi(app)
    install_docs(app)
    install_ui(app)

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
                "description": "SQL and Redis both answer. `checks.beat` reports beat's "
                "heartbeat (`ok`, `stale: last tick N s ago`, `missing`) without deciding "
                "readiness.",
                "content": {
                    "application/json": {
                        "example": {
                            "status": "ready",
                            "checks": {"database": "ok", "redis": "ok", "beat": "ok"},
                        }
                    }
                },
            },
            503: {"model": ErrorResponse, "description": "A dependency is down."},
        },
    )
    def readyz() -> Any:
        """Whether this API process can reach PostgreSQL (or SQLite) and Redis now, and
        whether beat (the watchdog's clock) has ticked lately."""
        checks: dict[str, str] = {}
        try:
            with app.state.session_factory() as session:
                session.execute(text("SELECT 1"))
            checks["database"] = "ok"
            app.state.database_health.recovered()
        except Exception as exc:  # readiness reports any failure, whatever its kind
            if is_database_unavailable(exc):
                app.state.database_health.failed(exc)
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            redis.Redis.from_url(settings.broker_url, socket_timeout=2).ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = f"error: {type(exc).__name__}"
        failing = ", ".join(k for k, v in checks.items() if v != "ok")
        # Reported, not required: without beat this process still serves every request;
        # what stops is the watchdog's repair of stalled work, which an operator must see.
        checks["beat"] = app.state.beat_monitor.status().describe()
        if failing:
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

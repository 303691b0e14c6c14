"""`GET /metrics`: the Prometheus text format, from a registry of the app's own."""

import redis
from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from sqlalchemy.orm import Session, sessionmaker

from app.observability.collectors import ShardtrainCollector
from app.observability.http_metrics import HttpMetricsMiddleware, request_duration_histogram


def install_metrics(app: FastAPI, sessions: sessionmaker[Session], client: redis.Redis) -> None:
    # A registry per app rather than prometheus_client's global one: a process that
    # builds several apps (the tests do) would otherwise register each series twice.
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    # The app's database health and beat monitor (create_app sets them first), so a
    # scrape during an outage logs nothing new and /metrics judges beat as /readyz does.
    registry.register(
        ShardtrainCollector(
            sessions,
            client,
            getattr(app.state, "database_health", None),
            getattr(app.state, "beat_monitor", None),
        )
    )
    app.add_middleware(HttpMetricsMiddleware, histogram=request_duration_histogram(registry))

    # Unauthenticated, for the operators' scraper, and out of the OpenAPI document,
    # which describes the /v1 API that clients and the SDK are generated from.
    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

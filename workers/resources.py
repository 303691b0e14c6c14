"""What every task of one worker process shares: the blob store, the parameter store,
the alias generations, the metrics recorder and the dispatcher, each made once per
process."""

from functools import cache

import redis

from app.config import get_settings
from app.dispatch import Dispatcher
from app.model_names.resolution import AliasGenerations
from app.observability.worker_metrics import WorkerMetrics
from app.paramstore import ParamStore
from app.storage import BlobStore, open_store
from workers.celery_app import celery_app


@cache
def store() -> BlobStore:
    return open_store(get_settings())


@cache
def params() -> ParamStore:
    settings = get_settings()
    return ParamStore(
        redis.Redis.from_url(settings.broker_url),
        chunk_bytes=settings.param_chunk_bytes,
        ttl_s=settings.param_ttl_s,
    )


@cache
def alias_generations() -> AliasGenerations:
    # Short timeouts: the bump follows a committed champion move, and a Redis that
    # drops packets must not hold finalize (the API's entries age out regardless).
    client = redis.Redis.from_url(get_settings().broker_url, socket_timeout=5)
    return AliasGenerations(client)


@cache
def metrics() -> WorkerMetrics:
    return WorkerMetrics(redis.Redis.from_url(get_settings().broker_url, socket_timeout=5))


def dispatcher() -> Dispatcher:
    return Dispatcher(celery_app)

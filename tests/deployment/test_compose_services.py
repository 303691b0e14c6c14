"""docker-compose.yml's services: the ones issue 8 names, their environment (every
SHARDTRAIN_* variable a real setting, shared where it must be), dependencies, GPUs and
volumes."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from deployment_files import (
    ENV_PREFIX,
    REQUIRED_SERVICES,
    ROOT,
    SHARED_ENV_SERVICES,
    Stage,
    build_target,
    command_words,
    dockerfile_env,
    option_value,
    resolved_env,
    service_env,
    volume_mounts,
)

from app.config import Settings
from app.messaging import QUEUES


def test_compose_defines_the_services(services: dict[str, dict[str, Any]]) -> None:
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


def test_every_shardtrain_env_var_is_a_settings_field(
    services: dict[str, dict[str, Any]], stages: list[Stage]
) -> None:
    names = {
        name
        for service in services.values()
        for name in service_env(service)
        if name.startswith(ENV_PREFIX)
    }
    names |= {
        name for stage in stages for name in dockerfile_env(stage) if name.startswith(ENV_PREFIX)
    }
    assert names, "no SHARDTRAIN_* variables found"
    unknown = sorted(n for n in names if n[len(ENV_PREFIX) :].lower() not in Settings.model_fields)
    assert not unknown, f"not fields of app.config.Settings: {unknown}"


def test_migrate_api_and_worker_share_the_environment(services: dict[str, dict[str, Any]]) -> None:
    envs = {name: service_env(services[name]) for name in SHARED_ENV_SERVICES}
    for name, env in envs.items():
        for key in ("DATABASE_URL", "REDIS_URL", "DATA_DIR"):
            assert ENV_PREFIX + key in env, f"{name} lacks {ENV_PREFIX}{key}"
    assert envs["migrate"] == envs["api"] == envs["worker"]


def test_urls_point_at_the_compose_services(services: dict[str, dict[str, Any]]) -> None:
    env = service_env(services["api"])
    db = urlsplit(env["SHARDTRAIN_DATABASE_URL"])
    pg = service_env(services["postgres"])
    assert db.hostname in services
    assert (db.username, db.password, db.path.lstrip("/")) == (
        pg["POSTGRES_USER"],
        pg["POSTGRES_PASSWORD"],
        pg["POSTGRES_DB"],
    )
    assert (db.port or 5432) == 5432
    redis = urlsplit(env["SHARDTRAIN_REDIS_URL"])
    assert redis.scheme == "redis"
    assert redis.hostname == "redis"


def test_worker_database_url_uses_psycopg(services: dict[str, dict[str, Any]]) -> None:
    url = service_env(services["worker"])["SHARDTRAIN_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://"), url


def gpu_reservations(service: dict[str, Any]) -> list[dict[str, Any]]:
    devices = (
        service.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    )
    return [
        d
        for d in devices
        if d.get("driver") == "nvidia"
        and "gpu" in d.get("capabilities", [])
        and (d.get("count") == "all" or int(d.get("count", 0)) >= 1 or d.get("device_ids"))
    ]


def test_worker_reserves_a_gpu(services: dict[str, dict[str, Any]]) -> None:
    assert gpu_reservations(services["worker"]), services["worker"].get("deploy")


def test_gpu_workers_are_pinned_to_different_gpus(services: dict[str, dict[str, Any]]) -> None:
    """Docker gives every replica of `count: N` the first N GPUs, so workers that are to
    use different GPUs must name them; no GPU may be pinned by two worker services."""
    workers = {n: s for n, s in services.items() if build_target(s) == "worker"}
    pinned: dict[str, str] = {}
    for name, service in workers.items():
        for reservation in gpu_reservations(service):
            if "count" in reservation:
                assert len(workers) == 1, f"{name}: with several GPU workers, use device_ids"
            for device in reservation.get("device_ids", []):
                assert str(device) not in pinned, (
                    f"GPU {device} is reserved by both {pinned[str(device)]} and {name}"
                )
                pinned[str(device)] = name
        words = command_words(service["command"])
        assert option_value(words, "--pool", "-P") == "solo", f"{name} must use the solo pool"


def test_migrate_runs_alembic_once_after_postgres(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert command_words(migrate["command"]) == ["alembic", "upgrade", "head"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert str(migrate.get("restart")) == "no"
    assert (ROOT / "migrations").is_dir()


@pytest.mark.parametrize("name", ["api", "worker"])
def test_api_and_worker_wait_for_migrations_and_redis(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    depends = services[name]["depends_on"]
    assert depends["migrate"]["condition"] == "service_completed_successfully"
    assert depends["redis"]["condition"] == "service_healthy"


def test_api_and_worker_share_the_blob_volume(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    sources = []
    for name in ("api", "worker"):
        data_dir = service_env(services[name])["SHARDTRAIN_DATA_DIR"]
        mounts = volume_mounts(services[name])
        assert data_dir in mounts, f"{name} mounts nothing at {data_dir}: {mounts}"
        sources.append(mounts[data_dir])
    assert sources[0] == sources[1], sources
    # A named volume (not a bind path) declared at the top level.
    assert sources[0] in (compose.get("volumes") or {}), sources[0]
    assert "pgdata" in compose["volumes"] or any(
        v in compose["volumes"] for v in volume_mounts(services["postgres"]).values()
    )


def test_settings_read_the_compose_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    env = resolved_env(services["worker"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)

    assert settings.database_url == env["SHARDTRAIN_DATABASE_URL"]
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.redis_url == env["SHARDTRAIN_REDIS_URL"]
    assert settings.broker_url == env["SHARDTRAIN_REDIS_URL"]
    assert settings.data_dir == Path(env["SHARDTRAIN_DATA_DIR"]) == Path("/data")
    # Without the s3 profile's settings, blobs stay on the shared volume.
    assert not settings.s3_storage and settings.blob_dir == Path("/data/blobs")


def test_deploy_docs_name_only_real_settings() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    names = set(re.findall(r"\b" + ENV_PREFIX + r"[A-Z0-9_]+", text))
    assert {"SHARDTRAIN_REDIS_URL", "SHARDTRAIN_DATABASE_URL", "SHARDTRAIN_DATA_DIR"} <= names
    unknown = sorted(n for n in names if n[len(ENV_PREFIX) :].lower() not in Settings.model_fields)
    assert not unknown, f"docs/deploy.md names settings that do not exist: {unknown}"
    for queue in QUEUES:
        assert queue in text, f"docs/deploy.md never names the queue {queue}"

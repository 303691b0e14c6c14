"""docker-compose.yml's `s3` profile: MinIO and a one-shot that makes its bucket, and
the shared environment that, given SHARDTRAIN_STORAGE_URL, points every service at it.
Parsed, not run: no Docker engine runs here."""

from __future__ import annotations

import shlex
from typing import Any
from urllib.parse import urlsplit

import pytest
from deployment_files import ROOT, SHARED_ENV_SERVICES, command_words, resolved_env

from app.config import Settings
from app.storage.s3 import S3Location

PROFILE_SERVICES = {"minio", "minio-bucket"}
S3_SHELL = {"COMPOSE_PROFILES": "s3", "SHARDTRAIN_STORAGE_URL": "s3://shardtrain/blobs"}


def settings_of(service: dict[str, Any], shell: dict[str, str], mp: pytest.MonkeyPatch) -> Settings:
    for name, value in resolved_env(service, shell).items():
        mp.setenv(name, value)
    return Settings(_env_file=None)


def bucket_command(services: dict[str, dict[str, Any]]) -> list[str]:
    words = command_words(services["minio-bucket"]["entrypoint"])
    assert words[:2] == ["sh", "-c"], words
    return shlex.split(words[2].replace("$$", "$"))


def test_only_minio_and_its_bucket_are_in_the_profile(services: dict[str, dict[str, Any]]) -> None:
    profiled = {name for name, service in services.items() if service.get("profiles")}
    assert profiled == PROFILE_SERVICES
    for name in PROFILE_SERVICES:
        assert services[name]["profiles"] == ["s3"]


def test_minio_is_healthchecked_pinned_and_keeps_its_data(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    minio = services["minio"]
    assert ":RELEASE." in minio["image"], "pin a MinIO release, not latest"
    assert command_words(minio["healthcheck"]["test"]) == ["CMD", "mc", "ready", "local"]
    source = minio["volumes"][0].split(":")[0]
    assert source in compose["volumes"]
    bucket = services["minio-bucket"]
    assert bucket["restart"] == "no"
    assert bucket["depends_on"]["minio"]["condition"] == "service_healthy"


def test_services_that_store_blobs_wait_for_the_bucket_only_when_the_profile_is_on(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("api", "worker"):
        wait = services[name]["depends_on"]["minio-bucket"]
        assert wait == {"condition": "service_completed_successfully", "required": False}
    for name, service in services.items():
        if name in PROFILE_SERVICES:
            continue
        for needed, how in (service.get("depends_on") or {}).items():
            if needed in PROFILE_SERVICES:
                assert how.get("required") is False, f"{name} would need the s3 profile"


def test_with_the_profile_every_service_stores_in_the_bucket_it_makes(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in SHARED_ENV_SERVICES:
        settings = settings_of(services[name], S3_SHELL, monkeypatch)
        assert settings.s3_storage, name
    assert settings.storage_url is not None
    made = bucket_command(services)
    assert made[-4:-1] == ["mc", "mb", "--ignore-existing"]
    assert made[-1] == f"local/{S3Location.parse(settings.storage_url).bucket}"

    env = resolved_env(services["worker"], S3_SHELL)
    endpoint = urlsplit(env["AWS_ENDPOINT_URL"])
    minio_words = command_words(services["minio"]["command"])
    port = minio_words[minio_words.index("--address") + 1].lstrip(":")
    assert (endpoint.hostname, str(endpoint.port)) == ("minio", port)
    alias = made[made.index("alias") : made.index("alias") + 6]
    assert alias[2:4] == ["local", env["AWS_ENDPOINT_URL"]]


@pytest.mark.parametrize(
    "shell", [S3_SHELL, {**S3_SHELL, "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s"}]
)
def test_the_services_credentials_are_minios(
    services: dict[str, dict[str, Any]], shell: dict[str, str]
) -> None:
    worker = resolved_env(services["worker"], shell)
    minio = resolved_env(services["minio"], shell)
    maker = resolved_env(services["minio-bucket"], shell)
    assert (worker["AWS_ACCESS_KEY_ID"], worker["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    assert (maker["AWS_ACCESS_KEY_ID"], maker["AWS_SECRET_ACCESS_KEY"]) == (
        minio["MINIO_ROOT_USER"],
        minio["MINIO_ROOT_PASSWORD"],
    )
    # MinIO refuses a root password under 8 characters; the default must start.
    if "AWS_SECRET_ACCESS_KEY" not in shell:
        assert len(minio["MINIO_ROOT_PASSWORD"]) >= 8


def test_the_deploy_docs_show_the_profile() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    assert "COMPOSE_PROFILES=s3" in text
    assert f"SHARDTRAIN_STORAGE_URL={S3_SHELL['SHARDTRAIN_STORAGE_URL']}" in text

"""The healthchecks of compose and of the images: present, probing the right ports, and
(run in this process against a fake Redis) healthy exactly when they should be."""

from __future__ import annotations

import ast
import importlib
import os
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from celery.utils.nodenames import default_nodename
from deployment_files import (
    LONG_RUNNING_SERVICES,
    SERVICE_STAGES,
    Stage,
    command_words,
    dockerfile_healthcheck,
    effective,
    healthcheck_words,
    option_value,
    python_snippet,
    seconds,
)
from fake_redis import FakeRedis

from app.fleet import WorkerRegistry


def run_snippet(code: str) -> int:
    """Run a `python -c` healthcheck in this process; its exit status."""
    with pytest.raises(SystemExit) as exited:
        exec(compile(code, "<healthcheck>", "exec"), {"__name__": "__main__"})
    return int(exited.value.code or 0)


@pytest.mark.parametrize("name", sorted(LONG_RUNNING_SERVICES))
def test_long_running_services_have_healthchecks_and_restart(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    service = services[name]
    check = service.get("healthcheck")
    assert check, f"{name} has no healthcheck"
    assert not check.get("disable"), f"{name} disables its healthcheck"
    words = healthcheck_words(service)
    assert words and words[0] != "NONE", f"{name}: empty healthcheck {words}"
    for key in ("interval", "timeout"):
        assert key in check, f"{name}: healthcheck without {key}"
        seconds(check[key])
    assert service.get("restart") in {"unless-stopped", "always", "on-failure"}, (
        f"{name} is not restarted when it exits"
    )


def test_backing_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in " ".join(command_words(services["postgres"]["healthcheck"]["test"]))
    assert "redis-cli" in command_words(services["redis"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(command_words(services["api"]["healthcheck"]["test"]))


def test_healthchecks_probe_the_ports_the_services_listen_on(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, path in (("api", "/healthz"), ("flower", "/healthcheck")):
        port = option_value(command_words(services[name]["command"]), "--port")
        code = python_snippet(healthcheck_words(services[name]))
        assert f"http://127.0.0.1:{port}{path}" in code, f"{name} healthcheck: {code}"


@pytest.mark.parametrize("name", sorted(SERVICE_STAGES))
def test_python_healthchecks_import_what_exists(
    services: dict[str, dict[str, Any]], name: str
) -> None:
    code = python_snippet(healthcheck_words(services[name]))
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                importlib.import_module(alias.name)
        elif isinstance(node, ast.ImportFrom):
            assert node.module
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{node.module} has no {alias.name}"


def test_worker_healthcheck_reads_the_fleet_heartbeat(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Healthy exactly while this worker's heartbeat (WorkerRegistry.announce, under the
    default node name celery@<hostname>) is in Redis: a solo pool busy with a shard
    answers no `celery inspect ping`, but its heartbeat thread keeps announcing."""
    check = services["worker"]["healthcheck"]
    code = python_snippet(healthcheck_words(services["worker"]))
    assert "inspect" not in code
    fake = FakeRedis()
    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **k: fake)
    registry = WorkerRegistry(fake)  # type: ignore[arg-type]

    assert run_snippet(code) == 1, "healthy with no heartbeat"
    registry.announce("celery@some-other-host", 1)
    assert run_snippet(code) == 1, "healthy on another worker's heartbeat"
    registry.announce(default_nodename(None), 1)
    assert run_snippet(code) == 0
    registry.withdraw(default_nodename(None))
    assert run_snippet(code) == 1
    # The first heartbeat follows a CUDA probe that may take up to two minutes.
    assert seconds(check["start_period"]) >= 120
    assert seconds(check["timeout"]) >= 10


def test_beat_healthcheck_watches_the_schedule_file(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    schedule = option_value(command_words(services["beat"]["command"]), "--schedule", "-s")
    code = python_snippet(healthcheck_words(services["beat"]))
    # The check globs the file beat writes (shelve may add .db, .dat, .dir or .bak).
    assert f"glob.glob('{schedule}*')" in code, code
    fake = FakeRedis()
    monkeypatch.setattr(redis.Redis, "from_url", lambda *a, **k: fake)
    local = code.replace(schedule, str(tmp_path / "celerybeat-schedule"))

    assert run_snippet(local) == 1, "healthy with no schedule file"
    written = tmp_path / "celerybeat-schedule.dat"
    written.write_bytes(b"")
    assert run_snippet(local) == 0
    assert fake.pings, "the beat healthcheck does not check Redis"
    stale = time.time() - 3600
    os.utime(written, (stale, stale))
    assert run_snippet(local) == 1, "healthy with a schedule file untouched for an hour"


def test_dockerfile_healthchecks_match_compose(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    """`docker run` of an image (a worker on another host) gets the same check as compose."""
    for name, stage in SERVICE_STAGES.items():
        assert dockerfile_healthcheck(stage_by_name[stage], stage_by_name) == healthcheck_words(
            services[name]
        ), name


def test_api_stage_healthcheck_uses_python(stage_by_name: dict[str, Stage]) -> None:
    check = effective(stage_by_name["api"], stage_by_name, "HEALTHCHECK")
    assert check and "/healthz" in check
    assert "urllib" in check and "curl" not in check

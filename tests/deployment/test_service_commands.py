"""The commands the services run: uvicorn's app factory and shutdown bound, the Celery
app of the worker, beat and Flower, the same in compose and in the images' CMD."""

from __future__ import annotations

import importlib
import inspect
import re
import tomllib
from typing import Any

from celery import Celery
from deployment_files import (
    ROOT,
    SERVICE_STAGES,
    Stage,
    celery_app_module,
    command_words,
    effective,
    exec_form,
    option_value,
    seconds,
    service_env,
    stage_chain,
)
from packaging.requirements import Requirement

from app.messaging import QUEUES


def test_api_command_names_an_existing_app_factory(services: dict[str, dict[str, Any]]) -> None:
    words = command_words(services["api"]["command"])
    assert words[0] == "uvicorn"
    assert "--factory" in words
    target = next(w for w in words[1:] if ":" in w and not w.startswith("-"))
    module, _, attr = target.partition(":")
    assert (module, attr) == ("app.main", "create_app")
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{path.relative_to(ROOT)} does not exist"
    assert f"def {attr}(" in path.read_text(), f"{path.relative_to(ROOT)} defines no {attr}()"
    assert option_value(words, "--port") == "8000"
    assert any(str(port).split(":")[-1] == "8000" for port in services["api"]["ports"])


def test_api_commands_bound_the_graceful_shutdown(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    """uvicorn's default waits for every open request on SIGTERM, so one slow upload holds
    a stop (or a rolling deploy) until the platform's SIGKILL; bounded, the stop is clean."""
    from app.runner import GRACEFUL_SHUTDOWN_S, api_command
    from app.supervisor import Supervisor

    words = command_words(services["api"]["command"])
    timeout = int(option_value(words, "--timeout-graceful-shutdown"))
    # Docker sends SIGKILL after stop_grace_period (10 s unless set).
    grace = seconds(services["api"].get("stop_grace_period", "10s"))
    assert 0 < timeout < grace, (timeout, grace)
    cmd = effective(stage_by_name["api"], stage_by_name, "CMD")
    assert cmd and option_value(exec_form(cmd), "--timeout-graceful-shutdown") == str(timeout)
    # The runner's uvicorn: inside the time the supervisor waits before its SIGKILL.
    stop_timeout = inspect.signature(Supervisor.stop_all).parameters["timeout_s"].default
    assert 0 < GRACEFUL_SHUTDOWN_S < stop_timeout
    words = api_command("127.0.0.1", 8000)
    assert option_value(words, "--timeout-graceful-shutdown") == str(GRACEFUL_SHUTDOWN_S)


def test_worker_command_names_an_existing_celery_app(services: dict[str, dict[str, Any]]) -> None:
    words = command_words(services["worker"]["command"])
    assert words[:1] == ["celery"]
    module = option_value(words, "-A", "--app")
    assert module == "workers.celery_app"
    path = ROOT / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{path.relative_to(ROOT)} does not exist"
    assert "worker" in words
    # CUDA must not be initialised in a parent that forks: one process per GPU.
    assert option_value(words, "--pool", "-P") == "solo"
    queues = set(option_value(words, "-Q", "--queues").split(","))
    # The GPU worker takes every queue, `train_gpu` included.
    assert queues == set(QUEUES)


def test_dockerfile_commands_match_compose(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    for name, stage in SERVICE_STAGES.items():
        cmd = effective(stage_by_name[stage], stage_by_name, "CMD")
        assert cmd, f"stage {stage} has no CMD"
        assert exec_form(cmd) == command_words(services[name]["command"]), name


def test_celery_commands_name_a_real_celery_app(services: dict[str, dict[str, Any]]) -> None:
    celery_services = [
        n for n, s in services.items() if command_words(s.get("command", []))[:1] == ["celery"]
    ]
    assert {"worker", "beat", "flower"} <= set(celery_services)
    for name in celery_services:
        module_name = celery_app_module(command_words(services[name]["command"]))
        assert (ROOT / (module_name.replace(".", "/") + ".py")).is_file(), module_name
        module = importlib.import_module(module_name)
        # `celery -A module` uses the module's Celery instance.
        assert any(isinstance(v, Celery) for v in vars(module).values()), module_name


def test_flower_service(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    flower = services["flower"]
    words = command_words(flower["command"])
    assert celery_app_module(words) == "workers.celery_app"
    assert "flower" in words
    assert flower["depends_on"]["redis"]["condition"] == "service_healthy"
    env = service_env(flower)
    assert env["SHARDTRAIN_REDIS_URL"] == service_env(services["worker"])["SHARDTRAIN_REDIS_URL"]
    # Credentials come from the operator's environment, and must be set: never open.
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", env["FLOWER_BASIC_AUTH"]), env
    port = option_value(words, "--port")
    published = [str(p) for p in flower.get("ports", [])]
    assert published, "flower publishes no port"
    for mapping in published:
        assert mapping.startswith("127.0.0.1:") and mapping.endswith(f":{port}"), mapping
    # The image has Flower: its stage installs the `monitor` extra, which requires it.
    chain = stage_chain(stage_by_name["flower"], stage_by_name)
    installs = [a for link in chain for a in link.args("RUN") if "pip install" in a]
    assert any("[monitor]" in a for a in installs), installs
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    assert any(Requirement(r).name == "flower" for r in extras["monitor"]), extras["monitor"]


def test_one_beat_service_runs_the_watchdog_clock(services: dict[str, dict[str, Any]]) -> None:
    words = command_words(services["beat"]["command"])
    assert words[:2] == ["celery", "-A"]
    assert option_value(words, "-A", "--app") == "workers.celery_app"
    assert "beat" in words
    assert "deploy" not in services["beat"] or "replicas" not in services["beat"]["deploy"]
    # Only one service runs beat, and no worker embeds one (`worker -B`).
    beats = [n for n, s in services.items() if "beat" in command_words(s.get("command", []))]
    assert beats == ["beat"], beats
    for name, service in services.items():
        words = command_words(service.get("command", []))
        assert "-B" not in words and "--beat" not in words, f"{name} embeds a beat"

"""The Dockerfile and docker-compose.yml agree with each other and with the code.

No Docker needed: both files are parsed, and every name they use (settings, modules,
build targets, volumes) is checked against the repository.
"""

from __future__ import annotations

import os
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from app.config import Settings
from workers.celery_app import QUEUES

ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "SHARDTRAIN_"
SHARED_ENV_SERVICES = ("migrate", "api", "worker")


# --------------------------------------------------------------------------- parsing


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [args for kw, args in self.instructions if kw == keyword]


def _logical_lines(text: str) -> list[str]:
    """Dockerfile lines with comments dropped and `\\` continuations joined."""
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        lines.append((pending + stripped).strip())
        pending = ""
    if pending.strip():
        lines.append(pending.strip())
    return lines


def parse_dockerfile(path: Path) -> list[Stage]:
    stages: list[Stage] = []
    for line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        args = args.strip()
        if keyword == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            name = None
            if len(words) >= 3 and words[1].upper() == "AS":
                name = words[2]
            stages.append(Stage(name=name, base=words[0]))
        elif stages:
            stages[-1].instructions.append((keyword, args))
    return stages


def exec_form(args: str) -> list[str]:
    """CMD/ENTRYPOINT arguments: JSON exec form or shell form, as a list of words."""
    parsed = yaml.safe_load(args) if args.startswith("[") else None
    return [str(a) for a in parsed] if isinstance(parsed, list) else shlex.split(args)


def dockerfile_env(stage: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for args in stage.args("ENV"):
        for word in shlex.split(args):
            if "=" in word:
                key, _, value = word.partition("=")
                env[key] = value
    return env


def command_words(command: Any) -> list[str]:
    if isinstance(command, str):
        return shlex.split(command)
    assert isinstance(command, list), f"unexpected command {command!r}"
    return [str(word) for word in command]


def service_env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """target path -> source for every volume of a service (short or long syntax)."""
    mounts: dict[str, str] = {}
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            source, _, rest = volume.partition(":")
            mounts[rest.split(":")[0]] = source
        else:
            mounts[volume["target"]] = volume.get("source", "")
    return mounts


def option_value(words: list[str], *names: str) -> str:
    for i, word in enumerate(words):
        for name in names:
            if word == name and i + 1 < len(words):
                return words[i + 1]
            if word.startswith(name + "="):
                return word.split("=", 1)[1]
    raise AssertionError(f"none of {names} in {words}")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    parsed = parse_dockerfile(ROOT / "Dockerfile")
    assert parsed, "Dockerfile has no FROM"
    return parsed


@pytest.fixture(scope="module")
def stage_by_name(stages: list[Stage]) -> dict[str, Stage]:
    return {stage.name: stage for stage in stages if stage.name}


def stage_chain(stage: Stage, stage_by_name: dict[str, Stage]) -> list[Stage]:
    """The stage and the stages it is built FROM, nearest first."""
    chain = [stage]
    while chain[-1].base in stage_by_name:
        chain.append(stage_by_name[chain[-1].base])
        assert len(chain) < 50, "FROM cycle in Dockerfile"
    return chain


def effective(stage: Stage, stage_by_name: dict[str, Stage], keyword: str) -> str | None:
    """The last value of an instruction that a stage sets or inherits."""
    for link in stage_chain(stage, stage_by_name):
        values = link.args(keyword)
        if values:
            return values[-1]
    return None


def build_target(service: dict[str, Any]) -> str | None:
    build = service.get("build")
    return build.get("target") if isinstance(build, dict) else None


# --------------------------------------------------------------------------- compose


def test_compose_defines_the_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"api", "worker", "postgres", "redis", "migrate"} <= set(services)


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


def test_worker_reserves_a_gpu(services: dict[str, dict[str, Any]]) -> None:
    devices = services["worker"]["deploy"]["resources"]["reservations"]["devices"]
    gpus = [
        d
        for d in devices
        if d.get("driver") == "nvidia"
        and "gpu" in d.get("capabilities", [])
        and (d.get("count") == "all" or int(d.get("count", 0)) >= 1 or d.get("device_ids"))
    ]
    assert gpus, devices


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


def test_backing_services_have_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    assert "pg_isready" in " ".join(command_words(services["postgres"]["healthcheck"]["test"]))
    assert "redis-cli" in command_words(services["redis"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(command_words(services["api"]["healthcheck"]["test"]))


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


# --------------------------------------------------------------------------- Dockerfile


def test_dockerfile_stages(stages: list[Stage], stage_by_name: dict[str, Stage]) -> None:
    assert stages[0].base == "python:3.11-slim"
    assert {"base", "api", "worker"} <= set(stage_by_name)
    for stage in stages:
        root = stage_chain(stage, stage_by_name)[-1]
        assert root.base == "python:3.11-slim", f"stage {stage.name} is built on {root.base}"


def test_compose_build_targets_exist(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    targets = {name: build_target(s) for name, s in services.items() if "build" in s}
    assert {"migrate", "api", "worker"} <= set(targets)
    assert targets["api"] == "api"
    assert targets["worker"] == "worker"
    assert targets["migrate"] in {"base", "api"}
    for service, target in targets.items():
        assert target in stage_by_name, f"{service}: no stage {target!r} in the Dockerfile"


def test_final_stages_run_as_non_root(
    services: dict[str, dict[str, Any]], stages: list[Stage], stage_by_name: dict[str, Stage]
) -> None:
    finals = {build_target(s) for s in services.values() if "build" in s} | {stages[-1].name}
    for name in finals:
        assert name is not None
        user = effective(stage_by_name[name], stage_by_name, "USER")
        assert user, f"stage {name} runs as root (no USER)"
        uid = user.split(":")[0]
        assert uid not in {"root", "0"}, f"stage {name} runs as {user}"


def test_data_dir_is_owned_by_the_runtime_user(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    data_dir = service_env(services["api"])["SHARDTRAIN_DATA_DIR"]
    for name in ("api", "worker"):
        chain = stage_chain(stage_by_name[name], stage_by_name)
        env: dict[str, str] = {}
        for link in reversed(chain):
            env.update(dockerfile_env(link))
        assert env.get("SHARDTRAIN_DATA_DIR") == data_dir
        user = effective(stage_by_name[name], stage_by_name, "USER")
        assert user
        runs = [args for link in chain for args in link.args("RUN")]
        assert any("chown" in r and data_dir in r and user.split(":")[0] in r for r in runs), (
            f"stage {name}: {data_dir} is not chowned to {user}"
        )


def test_dockerfile_copies_the_project(stage_by_name: dict[str, Stage]) -> None:
    required = {"app", "workers", "migrations", "alembic.ini", "pyproject.toml", "README.md"}
    for name in ("api", "worker"):
        chain = stage_chain(stage_by_name[name], stage_by_name)
        copied: set[str] = set()
        for link in chain:
            for args in link.args("COPY"):
                words = [w for w in args.split() if not w.startswith("--")]
                copied |= {w.rstrip("/") for w in words[:-1]}
        assert required <= copied, f"stage {name} does not copy {sorted(required - copied)}"
        installs = [args for link in chain for args in link.args("RUN") if "pip install" in args]
        assert any("." in shlex.split(r) for r in installs), (
            f"stage {name} never runs pip install ."
        )
    for path in sorted(required):
        assert (ROOT / path).exists(), f"the Dockerfile copies {path}, which does not exist"


def _torch_installs(stage: Stage, stage_by_name: dict[str, Stage]) -> list[str]:
    chain = stage_chain(stage, stage_by_name)
    return [args for link in chain for args in link.args("RUN") if "torch==" in args]


@pytest.mark.parametrize(("stage", "index"), [("api", "/whl/cpu"), ("worker", "/whl/cu128")])
def test_torch_build_per_stage(stage_by_name: dict[str, Stage], stage: str, index: str) -> None:
    installs = _torch_installs(stage_by_name[stage], stage_by_name)
    assert len(installs) == 1, f"stage {stage} installs torch {len(installs)} times: {installs}"
    words = shlex.split(installs[0])
    url = option_value(words, "--index-url", "-i")
    assert url == "https://download.pytorch.org" + index
    pin = next(w for w in words if w.startswith("torch=="))
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    torch_req = next(
        Requirement(r)
        for r in pyproject["project"]["dependencies"]
        if Requirement(r).name == "torch"
    )
    assert Version(pin.split("==")[1]) in torch_req.specifier, (pin, str(torch_req))


def test_dockerfile_commands_match_compose(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    for name in ("api", "worker"):
        cmd = effective(stage_by_name[name], stage_by_name, "CMD")
        assert cmd, f"stage {name} has no CMD"
        assert exec_form(cmd) == command_words(services[name]["command"])


def test_api_stage_healthcheck_uses_python(stage_by_name: dict[str, Stage]) -> None:
    check = effective(stage_by_name["api"], stage_by_name, "HEALTHCHECK")
    assert check and "/healthz" in check
    assert "urllib" in check and "curl" not in check


# --------------------------------------------------------------------------- Settings


def test_settings_read_the_compose_environment(
    services: dict[str, dict[str, Any]], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(ENV_PREFIX):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no stray .env file
    env = service_env(services["worker"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)

    settings = Settings(_env_file=None)  # type: ignore[call-arg]

    assert settings.database_url == env["SHARDTRAIN_DATABASE_URL"]
    assert settings.database_url.startswith("postgresql+psycopg://")
    assert settings.redis_url == env["SHARDTRAIN_REDIS_URL"]
    assert settings.broker_url == env["SHARDTRAIN_REDIS_URL"]
    assert settings.data_dir == Path(env["SHARDTRAIN_DATA_DIR"]) == Path("/data")


def test_one_beat_service_runs_the_watchdog_clock(services: dict[str, dict[str, Any]]) -> None:
    words = command_words(services["beat"]["command"])
    assert words[:2] == ["celery", "-A"]
    assert option_value(words, "-A", "--app") == "workers.celery_app"
    assert "beat" in words
    assert "deploy" not in services["beat"] or "replicas" not in services["beat"]["deploy"]

"""The Dockerfile and docker-compose.yml agree with each other and with the code.

No Docker needed: both files are parsed, and every name they use (settings, modules,
build targets, volumes) is checked against the repository.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import inspect
import os
import re
import shlex
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from celery import Celery
from celery.utils.nodenames import default_nodename
from packaging.requirements import Requirement
from packaging.version import Version

from app.config import Settings
from app.fleet import WorkerRegistry
from workers.celery_app import QUEUES

ROOT = Path(__file__).resolve().parents[1]
ENV_PREFIX = "SHARDTRAIN_"
SHARED_ENV_SERVICES = ("migrate", "api", "worker")
# Every service issue 8 names; all but the one-shot `migrate` run for good.
REQUIRED_SERVICES = {"api", "worker", "beat", "postgres", "redis", "migrate", "flower"}
ONE_SHOT_SERVICES = {"migrate"}
LONG_RUNNING_SERVICES = REQUIRED_SERVICES - ONE_SHOT_SERVICES
# Services built from this repository's Dockerfile that run for good, and their stage.
SERVICE_STAGES = {"api": "api", "worker": "worker", "beat": "beat", "flower": "flower"}


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


def healthcheck_words(service: dict[str, Any]) -> list[str]:
    """A compose healthcheck's `test` as the words of the command it runs."""
    words = command_words(service["healthcheck"]["test"])
    if words[:1] == ["CMD-SHELL"]:
        return ["sh", "-c", *words[1:]]
    assert words[:1] == ["CMD"], f"healthcheck test must start with CMD or CMD-SHELL: {words}"
    return words[1:]


def python_snippet(words: list[str]) -> str:
    """The code of a `python -c CODE` command."""
    assert words[:2] == ["python", "-c"] and len(words) == 3, words
    return words[2]


def dockerfile_healthcheck(stage: Stage, stage_by_name: dict[str, Stage]) -> list[str]:
    check = effective(stage, stage_by_name, "HEALTHCHECK")
    assert check, f"stage {stage.name} has no HEALTHCHECK"
    _, cmd_keyword, cmd = check.partition(" CMD ")
    assert cmd_keyword, f"stage {stage.name}: HEALTHCHECK without CMD: {check}"
    return exec_form(cmd.strip())


def seconds(duration: Any) -> float:
    """A compose duration (`1m30s`, `180s`, `500ms`) in seconds."""
    units = {"us": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
    parts = re.findall(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)", str(duration))
    assert parts and "".join(n + u for n, u in parts) == str(duration), duration
    return sum(float(n) * units[u] for n, u in parts)


def celery_app_module(words: list[str]) -> str:
    assert words[:1] == ["celery"], words
    return option_value(words, "-A", "--app")


class FakeRedis:
    """What WorkerRegistry and the healthchecks call, in memory."""

    def __init__(self) -> None:
        self.data: dict[bytes, bytes] = {}
        self.pings = 0

    def ping(self) -> bool:
        self.pings += 1
        return True

    def set(self, key: str, value: str, ex: int | None = None) -> None:
        self.data[key.encode()] = value.encode()

    def get(self, key: bytes | str) -> bytes | None:
        return self.data.get(key if isinstance(key, bytes) else key.encode())

    def delete(self, key: str) -> None:
        self.data.pop(key.encode(), None)

    def scan_iter(self, pattern: str, count: int = 0) -> list[bytes]:
        return [k for k in self.data if fnmatch.fnmatchcase(k.decode(), pattern)]


def run_snippet(code: str) -> int:
    """Run a `python -c` healthcheck in this process; its exit status."""
    with pytest.raises(SystemExit) as exited:
        exec(compile(code, "<healthcheck>", "exec"), {"__name__": "__main__"})
    return int(exited.value.code or 0)


# --------------------------------------------------------------------------- compose


def test_compose_defines_the_services(services: dict[str, dict[str, Any]]) -> None:
    missing = REQUIRED_SERVICES - set(services)
    assert not missing, f"docker-compose.yml lacks {sorted(missing)}"


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


def _seconds(duration: str) -> float:
    """A compose duration such as `10s`, `1m30s` or `500ms`, in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(h|ms|us|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


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
    grace = _seconds(str(services["api"].get("stop_grace_period", "10s")))
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
    assert {"migrate", *SERVICE_STAGES} <= set(targets)
    for service, stage in SERVICE_STAGES.items():
        assert targets[service] == stage, f"{service} builds {targets[service]}, not {stage}"
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
    for name in sorted(set(SERVICE_STAGES.values()) | {"base"}):
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


@pytest.mark.parametrize(
    ("stage", "index"),
    [("api", "/whl/cpu"), ("beat", "/whl/cpu"), ("flower", "/whl/cpu"), ("worker", "/whl/cu128")],
)
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
    for name, stage in SERVICE_STAGES.items():
        cmd = effective(stage_by_name[stage], stage_by_name, "CMD")
        assert cmd, f"stage {stage} has no CMD"
        assert exec_form(cmd) == command_words(services[name]["command"]), name


def test_dockerfile_healthchecks_match_compose(
    services: dict[str, dict[str, Any]], stage_by_name: dict[str, Stage]
) -> None:
    """`docker run` of an image (a worker on another host) gets the same check as compose."""
    for name, stage in SERVICE_STAGES.items():
        assert dockerfile_healthcheck(stage_by_name[stage], stage_by_name) == healthcheck_words(
            services[name]
        ), name


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


def test_images_install_python_packages_from_pyproject_only(stages: list[Stage]) -> None:
    """Besides the pinned torch wheel, every `pip install` installs the project (with an
    extra of pyproject.toml at most), so a dependency added there reaches every image."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for stage in stages:
        for run in stage.args("RUN"):
            for command in re.split(r"&&|;", run):
                words = shlex.split(command)
                if words[:2] != ["pip", "install"]:
                    continue
                targets = [w for w in words[2:] if not w.startswith("-")]
                if any(t.startswith("torch==") for t in targets):
                    assert option_value(words, "--index-url", "-i").startswith(
                        "https://download.pytorch.org/whl/"
                    )
                    continue
                assert len(targets) == 1, f"stage {stage.name}: {command}"
                match = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", targets[0])
                assert match, f"stage {stage.name} installs {targets[0]}, not the project"
                for extra in (match.group(1) or "").split(","):
                    assert not extra or extra in extras, f"no extra {extra!r} in pyproject.toml"


def test_no_image_copies_the_sdk_or_tests(stages: list[Stage]) -> None:
    for stage in stages:
        for args in stage.args("COPY") + stage.args("ADD"):
            words = [w.rstrip("/") for w in args.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert source.split("/")[0] not in {"sdk", "tests", "bench", ".", ".venv"}, (
                    f"stage {stage.name} copies {source}"
                )


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    assert path.is_file(), ".dockerignore is missing"
    lines = [line.strip() for line in path.read_text().splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves `path` out (last matching pattern wins)."""
    result = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatchcase(p, pattern) or fnmatch.fnmatchcase(p, "*/" + pattern)
            for p in prefixes
        ):
            result = not negate
    return result


def test_dockerignore_keeps_the_context_small_and_the_sources_in(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    for path in (".git", ".venv", ".shardtrain", ".env", "sdk", "tests", "app/__pycache__"):
        assert ignored(path, patterns), f".dockerignore lets {path} into the build context"
    for stage in stages:
        for args in stage.args("COPY"):
            words = [w.rstrip("/") for w in args.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert not ignored(source, patterns), f".dockerignore drops {source}"
                for file in (ROOT / source).rglob("*.py") if (ROOT / source).is_dir() else []:
                    relative = file.relative_to(ROOT).as_posix()
                    if "__pycache__" not in relative:
                        assert not ignored(relative, patterns), f".dockerignore drops {relative}"


def test_deploy_docs_name_only_real_settings() -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    names = set(re.findall(r"\b" + ENV_PREFIX + r"[A-Z0-9_]+", text))
    assert {"SHARDTRAIN_REDIS_URL", "SHARDTRAIN_DATABASE_URL", "SHARDTRAIN_DATA_DIR"} <= names
    unknown = sorted(n for n in names if n[len(ENV_PREFIX) :].lower() not in Settings.model_fields)
    assert not unknown, f"docs/deploy.md names settings that do not exist: {unknown}"
    for queue in QUEUES:
        assert queue in text, f"docs/deploy.md never names the queue {queue}"


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
    # Only one service runs beat, and no worker embeds one (`worker -B`).
    beats = [n for n, s in services.items() if "beat" in command_words(s.get("command", []))]
    assert beats == ["beat"], beats
    for name, service in services.items():
        words = command_words(service.get("command", []))
        assert "-B" not in words and "--beat" not in words, f"{name} embeds a beat"

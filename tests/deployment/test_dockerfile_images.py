"""The Dockerfile's stages and what goes into the images: the base, the build targets
compose names, the runtime user, the copied sources, torch and pip installs, and the
build context .dockerignore leaves."""

from __future__ import annotations

import re
import shlex
import tomllib
from typing import Any

import pytest
from deployment_files import (
    ROOT,
    SERVICE_STAGES,
    Stage,
    build_target,
    dockerfile_env,
    dockerignore_patterns,
    effective,
    ignored,
    option_value,
    service_env,
    stage_chain,
)
from packaging.requirements import Requirement
from packaging.version import Version


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

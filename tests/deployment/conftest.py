"""The Dockerfile and docker-compose.yml agree with each other and with the code.

No Docker needed: both files are parsed, and every name they use (settings, modules,
build targets, volumes) is checked against the repository.
"""

from typing import Any

import pytest
import yaml
from deployment_files import ROOT, Stage, parse_dockerfile


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

"""Schemathesis against the live API's /openapi.json, every operation, with a valid key:
no server error, and every response as its operation declares it.

The seed and settings live here so that a failure reproduces: run the same command
(printed on failure) against a running system, or `st replay <id>` from its output."""

import subprocess
import sys

import pytest
from e2e_system import System

pytestmark = pytest.mark.e2e

SEED = 20261129
MAX_EXAMPLES = 15
CHECKS = ",".join(
    [
        "not_a_server_error",
        "status_code_conformance",
        "content_type_conformance",
        "response_schema_conformance",
    ]
)


def test_no_operation_breaks_or_answers_off_schema(system: System) -> None:
    authorization = system.client.headers["Authorization"]
    command = [
        sys.executable, "-m", "schemathesis.cli", "run", f"{system.base_url}/openapi.json",
        "--header", f"Authorization: {authorization}",
        "--seed", str(SEED),
        "--max-examples", str(MAX_EXAMPLES),
        "--phases", "examples,fuzzing",
        "--checks", CHECKS,
        "--workers", "1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    shown = " ".join(
        w if not w.startswith("Authorization") else "Authorization: …" for w in command
    )
    assert done.returncode == 0, f"{shown}\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert "22/22" in done.stdout or "Tested: " in done.stdout

"""A client generated from /openapi.json by a third-party generator
(openapi-python-client) uploads a dataset and trains on it against the live system:
the document is complete enough to build working clients from."""

import importlib
import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from e2e_system import System
from sample_data import iris_table, table_to_csv

pytestmark = pytest.mark.e2e

PACKAGE = "shardtrain_generated_client"


@pytest.fixture(scope="module")
def generated(system: System, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    workdir = tmp_path_factory.mktemp("generated")
    document = workdir / "openapi.json"
    document.write_bytes(system.client.get("/openapi.json").content)
    (workdir / "config.yaml").write_text(f"package_name_override: {PACKAGE}\n")
    # The generator formats its output with ruff, which lives beside this interpreter.
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    result = subprocess.run(
        [
            Path(sys.executable).parent / "openapi-python-client", "generate",
            "--path", str(document), "--config", str(workdir / "config.yaml"),
            "--meta", "none", "--output-path", str(workdir / PACKAGE),
        ],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Warning" not in result.stdout, result.stdout
    sys.path.insert(0, str(workdir))
    yield PACKAGE
    sys.path.remove(str(workdir))
    for name in [m for m in sys.modules if m.startswith(PACKAGE)]:
        del sys.modules[name]


def module(package: str, name: str) -> ModuleType:
    return importlib.import_module(f"{package}.{name}")


def test_generated_client_uploads_a_dataset_and_trains_on_it(
    system: System, generated: str
) -> None:
    client_module = module(generated, "client")
    types = module(generated, "types")
    models = module(generated, "models")
    datasets_create = module(generated, "api.datasets.datasets_create")
    datasets_get = module(generated, "api.datasets.datasets_get")
    jobs_create = module(generated, "api.jobs.jobs_create")
    jobs_get = module(generated, "api.jobs.jobs_get")
    api_key = system.client.headers["Authorization"].removeprefix("Bearer ")
    client = client_module.AuthenticatedClient(base_url=system.base_url, token=api_key)

    upload = models.DatasetUpload(
        file=types.File(payload=io.BytesIO(table_to_csv(iris_table())), file_name="iris.csv"),
        name="iris from the generated client",
    )
    dataset = datasets_create.sync(client=client, body=upload)
    assert isinstance(dataset, models.DatasetOut), dataset
    assert dataset.name == "iris from the generated client"
    deadline = time.monotonic() + 120
    while (dataset := datasets_get.sync(dataset.id, client=client)).status != "ready":
        assert dataset.status == "processing" and time.monotonic() < deadline, dataset
        time.sleep(0.2)
    assert dataset.rows == 150

    spec = models.JobSpec.from_dict(
        {"dataset_id": dataset.id, "target": "species", "training": {"rounds": 3}}
    )
    job = jobs_create.sync(client=client, body=spec)
    assert isinstance(job, models.JobOut), job
    while (job := jobs_get.sync(job.id, client=client)).status not in {"succeeded", "failed"}:
        assert time.monotonic() < deadline + 240
        time.sleep(0.2)
    assert job.status == "succeeded" and job.model_id

    # Errors come back as the typed error object the document declares.
    missing = jobs_get.sync("job_nope", client=client)
    assert isinstance(missing, models.ErrorResponse)
    assert missing.error.code == "not_found"

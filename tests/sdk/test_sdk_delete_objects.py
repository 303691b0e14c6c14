"""Undeploying and deleting models and jobs through the SDK (sync and async) and the CLI,
against the real app: the order the server enforces (the model before its job) comes
back as ConflictError, and as exit code 5 from the CLI."""

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sample_data import SEED_EXAMPLE_CSV
from sdk_harness import FAST, Served
from typer.testing import CliRunner

from app.config import Settings
from app.main import create_app
from shardtrain import AsyncClient, Client, ConflictError, JobDeleted, ModelDeleted, NotFoundError
from shardtrain.cli import app as cli
from shardtrain.cli import exit_codes
from shardtrain.cli.context import Settings as CLISettings

TrainJob = Callable[..., dict[str, Any]]
SPEC = {
    "target": "label",
    "distribution": {"shards": 2},
    "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    "training": {"rounds": 2, "learning_rate": 0.1},
}


def test_undeploy_delete_model_then_job(served: Served, train_job: TrainJob) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)
    models, jobs = served.sdk.models, served.sdk.jobs

    undeployed = models.undeploy(job["model_id"])
    assert (undeployed.id, undeployed.status) == (job["model_id"], "undeployed")
    assert [m.id for m in models.list(status="undeployed")] == [job["model_id"]]

    with pytest.raises(ConflictError) as caught:
        jobs.delete(job["id"])
    assert caught.value.code == "job_has_model"

    deleted = models.delete(job["model_id"])
    assert deleted == ModelDeleted(id=job["model_id"])
    with pytest.raises(NotFoundError):
        models.get(job["model_id"])

    assert jobs.delete(job["id"]) == JobDeleted(id=job["id"])
    with pytest.raises(NotFoundError):
        jobs.get(job["id"])


def test_async_undeploy_delete(settings: Settings, api_key: str, train_job: TrainJob) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)

    async def scenario() -> tuple[str, str, str]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncClient(api_key, "http://sdk.test", http_client=http, retry=FAST)
            status = (await client.models.undeploy(job["model_id"])).status
            try:
                await client.jobs.delete(job["id"])
                code = "none"
            except ConflictError as exc:
                code = str(exc.code)
            await client.models.delete(job["model_id"])
            return status, code, (await client.jobs.delete(job["id"])).id

    assert asyncio.run(scenario()) == ("undeployed", "job_has_model", job["id"])


def _run(monkeypatch: pytest.MonkeyPatch, sdk: Client, *args: str) -> Any:
    # The CLI's own client would dial a port; this one reaches the app in-process.
    monkeypatch.setattr(CLISettings, "client", lambda self: sdk)
    return CliRunner().invoke(cli, [*args, "--output", "json"])


def test_cli_exits_5_on_conflict_then_deletes(
    served: Served, train_job: TrainJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC)
    model_id = job["model_id"]

    result = _run(monkeypatch, served.sdk, "models", "undeploy", model_id)
    assert result.exit_code == 0, result.output
    assert '"undeployed"' in result.stdout

    result = _run(monkeypatch, served.sdk, "jobs", "delete", job["id"])
    assert result.exit_code == exit_codes.CONFLICT, result.output

    result = _run(monkeypatch, served.sdk, "models", "delete", model_id)
    assert result.exit_code == 0, result.output
    assert ModelDeleted.model_validate_json(result.stdout) == ModelDeleted(id=model_id)

    result = _run(monkeypatch, served.sdk, "jobs", "delete", job["id"])
    assert result.exit_code == 0, result.output
    assert JobDeleted.model_validate_json(result.stdout).id == job["id"]

"""Named models through the SDK (sync and async) and the CLI, against the real app."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pyarrow as pa
import pytest
from sample_data import SEED_EXAMPLE_CSV
from sdk_harness import FAST, Served
from typer.testing import CliRunner

from app.config import Settings
from app.main import create_app
from shardtrain import AsyncClient, Client, JobSpec, ModelName, NotFoundError
from shardtrain.cli import app as cli
from shardtrain.cli import exit_codes
from shardtrain.cli.context import Settings as CLISettings

TrainJob = Callable[..., dict[str, Any]]
SPEC = {
    "target": "label",
    "distribution": {"shards": 1},
    "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    "training": {"rounds": 2, "learning_rate": 0.1},
}


def test_versions_read_through_the_sdk(served: Served, train_job: TrainJob) -> None:
    jobs = [train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC, model_name="seed") for _ in range(2)]
    named = served.sdk.model_names.get("seed")
    assert isinstance(named, ModelName)
    assert (named.name, named.latest_version) == ("seed", 2)
    assert [(v.version, v.model_id) for v in named.versions] == [
        (1, jobs[0]["model_id"]),
        (2, jobs[1]["model_id"]),
    ]
    model = served.sdk.models.get(jobs[1]["model_id"])
    assert (model.model_name, model.version) == ("seed", 2)
    assert [n.name for n in served.sdk.model_names.list()] == ["seed"]
    with pytest.raises(NotFoundError) as missing:
        served.sdk.model_names.get("other")
    assert missing.value.param == "name"

    records = [{"x1": 2, "x2": 3}, {"x1": -1, "x2": -2}]
    by_version = served.sdk.model_names.predict("seed", 1, records)
    assert by_version == served.sdk.models.predict(jobs[0]["model_id"], records)
    table = served.sdk.model_names.predict_table("seed", 2, pa.Table.from_pylist(records))
    direct = served.sdk.models.predict(jobs[1]["model_id"], records)
    assert table.column("prediction").to_pylist() == direct.predictions
    with pytest.raises(NotFoundError) as no_version:
        served.sdk.model_names.predict("seed", 9, records)
    assert no_version.value.param == "version"


def test_the_sdk_spec_refuses_a_bad_name_before_any_request() -> None:
    with pytest.raises(ValueError, match="model_name"):
        JobSpec(dataset_id="ds_1", target="y", model_name="../up")
    assert (
        JobSpec(dataset_id="ds_1", target="y", model_name="churn-v2.1").to_request()["model_name"]
        == "churn-v2.1"
    )


def test_async_model_names(settings: Settings, api_key: str, train_job: TrainJob) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC, model_name="seed-async")

    records = [{"x1": 2, "x2": 3}]

    async def scenario() -> tuple[list[int], list[str], str, int]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncClient(api_key, "http://sdk.test", http_client=http, retry=FAST)
            named = await client.model_names.get("seed-async")
            names = [n.name async for n in client.model_names.list()]
            answer = await client.model_names.predict("seed-async", 1, records)
            table = await client.model_names.predict_table(
                "seed-async", 1, pa.Table.from_pylist(records)
            )
            return [v.version for v in named.versions], names, answer.model_id, table.num_rows

    assert asyncio.run(scenario()) == ([1], ["seed-async"], job["model_id"], 1)
    assert job["status"] == "succeeded"


def _run(monkeypatch: pytest.MonkeyPatch, sdk: Client, *args: str) -> Any:
    # The CLI's own client would dial a port; this one reaches the app in-process.
    monkeypatch.setattr(CLISettings, "client", lambda self: sdk)
    return CliRunner().invoke(cli, list(args))


def test_cli_lists_and_shows_names(
    served: Served, train_job: TrainJob, monkeypatch: pytest.MonkeyPatch
) -> None:
    job = train_job("seed.csv", SEED_EXAMPLE_CSV, **SPEC, model_name="seed-cli")
    shown = _run(monkeypatch, served.sdk, "model-names", "show", "seed-cli", "--output", "json")
    assert shown.exit_code == 0, shown.output
    assert [v["model_id"] for v in json.loads(shown.output)["versions"]] == [job["model_id"]]
    table = _run(monkeypatch, served.sdk, "model-names", "show", "seed-cli")
    assert "seed-cli: 1 version(s)" in table.output and job["model_id"] in table.output
    listed = _run(monkeypatch, served.sdk, "model-names", "list")
    assert listed.exit_code == 0 and "seed-cli" in listed.output
    missing = _run(monkeypatch, served.sdk, "model-names", "show", "nope")
    assert missing.exit_code == exit_codes.NOT_FOUND, missing.output

"""`--output id`, for shell variables (`DS=$(shardtrain datasets upload f.csv -o id)`):
stdout holds the ids alone, one a line; a command whose result has no id is a usage
error (exit 2) before it does any work."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sample_data import SEED_EXAMPLE_CSV
from sdk_harness import Served
from typer.testing import CliRunner, Result

from shardtrain.cli import app as cli
from shardtrain.cli import exit_codes
from shardtrain.cli.context import Settings as CLISettings


@pytest.fixture
def run(served: Served, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    # The CLI's own client would dial a port; this one reaches the app in-process.
    monkeypatch.setattr(CLISettings, "client", lambda self: served.sdk)
    return lambda *args: CliRunner().invoke(cli, list(args))


def test_ids_alone_on_stdout(
    run: Callable[..., Result], seed_model_job: dict[str, Any], tmp_path: Path
) -> None:
    data = tmp_path / "seed.csv"
    data.write_bytes(SEED_EXAMPLE_CSV)
    uploaded = run("datasets", "upload", str(data), "--output", "id")
    assert uploaded.exit_code == 0, uploaded.output
    dataset_id = uploaded.stdout.strip()
    assert dataset_id.startswith("ds_") and uploaded.stdout == f"{dataset_id}\n"
    shown = run("datasets", "show", dataset_id, "-o", "id")
    assert shown.stdout == f"{dataset_id}\n"

    job = seed_model_job
    listed = run("models", "list", "--job", job["id"], "-o", "id")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == f"{job['model_id']}\n"
    datasets = run("datasets", "list", "-o", "id").stdout.split()
    assert dataset_id in datasets and all(d.startswith("ds_") for d in datasets)
    events = run("jobs", "events", job["id"], "-o", "id").stdout.split()
    assert events and all(e.startswith("evt_") for e in events)


def test_results_without_ids_are_a_usage_error(
    run: Callable[..., Result], seed_model_job: dict[str, Any], tmp_path: Path
) -> None:
    job = seed_model_job
    metrics = run("jobs", "metrics", job["id"], "-o", "id")
    assert metrics.exit_code == exit_codes.USAGE, metrics.output
    assert "--output" in metrics.output and metrics.stdout == ""

    dest = tmp_path / "out"
    dest.mkdir()
    download = run("models", "download", job["model_id"], "--dest", str(dest), "-o", "id")
    assert download.exit_code == exit_codes.USAGE, download.output
    assert list(dest.iterdir()) == []

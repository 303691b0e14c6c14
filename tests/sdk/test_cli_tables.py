"""The CLI's list tables in an 80-column terminal (a pipe, or a default terminal window):
every cell a newcomer reads is whole, none cut to `suc…`."""

import time

import pytest
from rich.console import Console
from rich.table import Table

from shardtrain.cli import render
from shardtrain.models import Dataset, Event, Job, Model, RoundMetrics
from shardtrain.spec import JobSpec

NOW = int(time.time())


def _text(table: Table, width: int) -> str:
    console = Console(width=width, record=True, markup=False)
    with console.capture() as captured:
        console.print(table)
    return captured.get()


def _jobs() -> list[Job]:
    statuses = ["succeeded", "cancelled", "preparing", "running", "failed", "queued"]
    return [
        Job(
            id=f"job_{i:024x}",
            status=status,
            spec=JobSpec(dataset_id="ds_" + "a" * 24, target="species"),
            progress={"round": 20, "rounds": 20},
            model_id=f"mdl_{i:024x}" if status == "succeeded" else None,
            created_at=NOW - i * 3600,
        )
        for i, status in enumerate(statuses)
    ]


def _models() -> list[Model]:
    return [
        Model(
            id=f"mdl_{i:024x}",
            job_id=f"job_{i:024x}",
            task="classification",
            type="logistic_regression",
            status=status,
            metrics={"accuracy": 0.9667, "f1_macro": 0.9665, "log_loss": 0.1234},
            features=[],
            target="species",
            created_at=NOW - i * 60,
        )
        for i, status in enumerate(["deployed", "rejected", "deployed"])
    ]


def _datasets() -> list[Dataset]:
    return [
        Dataset(
            id=f"ds_{i:024x}", name=name, format=fmt, bytes=4_551_233, sha256="0" * 64,
            status=status,
            rows=150_000 if status == "ready" else None, created_at=NOW - i * 60,
        )
        for i, (name, fmt, status) in enumerate(
            [("iris", "csv", "ready"), ("churn-2026-q3", "parquet", "processing"),
             ("housing", "jsonl", "failed")]
        )
    ]  # fmt: skip


@pytest.mark.parametrize("width", [80, 100, 200])
def test_jobs_list_keeps_status_target_rounds_and_date_whole(width: int) -> None:
    jobs = _jobs()
    text = _text(render.job_table(jobs, width), width)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for job in jobs:
        row = next(line for line in text.splitlines() if line.startswith(job.id))
        for cell in (job.status, "species", "20/20", render.when(job.created_at, seconds=False)):
            assert cell in row, (cell, row)
        if width >= render.JOBS_WIDE and job.model_id:
            assert job.model_id in row and render.when(job.created_at) in row


@pytest.mark.parametrize("width", [80, 120, 200])
def test_models_list_keeps_every_metric_whole(width: int) -> None:
    models = _models()
    text = _text(render.model_table(models, width), width)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= width
    for model in models:
        row = next(line for line in text.splitlines() if line.startswith(model.id))
        assert model.status in row and render.when(model.created_at, seconds=False) in row
        if width >= render.MODELS_WIDE:
            assert "logistic_regression" in row and "species" in row
    for metric in ("accuracy=0.967", "f1_macro=0.967", "log_loss=0.123"):
        assert text.count(metric) == len(models), metric


@pytest.mark.parametrize("width", [80, 200])
def test_datasets_list_keeps_status_rows_and_date_whole(width: int) -> None:
    datasets = _datasets()
    text = _text(render.dataset_table(datasets, width), width)
    assert "…" not in text
    for d in datasets:
        row = next(line for line in text.splitlines() if line.startswith(d.id))
        assert d.name in row and d.status in row and render.when(d.created_at, seconds=False) in row
        if d.rows is not None:
            assert str(d.rows) in row
        if width >= render.DATASETS_WIDE:
            assert d.format in row and str(d.bytes) in row


def test_events_keep_time_type_and_level_whole_at_80_columns() -> None:
    table = render.event_table()
    event = Event(
        id="evt_1", job_id="job_1", type="round_completed", level="warning",
        message="round 3/20: shard 2 excluded after 3 failed attempts (worker lost)",
        data={}, created_at=NOW,
    )  # fmt: skip
    render.event_row(table, event)
    text = _text(render.pinned(table), 80)
    assert "…" not in text
    row = next(line for line in text.splitlines() if render.when(NOW) in line)
    assert "round_completed" in row and "warning" in row
    # The message wraps inside its column, word by word, none cut.
    start = text.splitlines()[0].index("message")
    message = " ".join(line[start:].strip() for line in text.splitlines()[1:])
    assert " ".join(message.split()) == event.message


def test_metrics_keep_every_metric_name_and_value_whole_at_80_columns() -> None:
    rounds = [
        RoundMetrics(
            round=r, train_loss=0.5 / r, val_loss=0.4 / r, seconds=0.25,
            val_metrics={"accuracy": 0.9333, "log_loss": 0.1633, "f1_macro": 0.9327},
            shards=[{"shard": s} for s in range(4)], excluded_shards=[],
            slowest_shard_seconds=0.1, created_at=NOW,
        )
        for r in range(1, 9)
    ]  # fmt: skip
    text = _text(render.metrics_table(rounds), 80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    header = text.splitlines()[0].split()
    assert header == ["round", "train", "loss", "val", "loss", "accuracy", "log_loss",
                      "f1_macro", "shards", "seconds"]  # fmt: skip
    row = next(line for line in text.splitlines() if line.startswith("8 "))
    assert row.split() == ["8", "0.0625", "0.0500", "0.9333", "0.1633", "0.9327", "4/4", "0.25"]

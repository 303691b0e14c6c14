"""`shardtrain models list|show|predict|deploy|undeploy|delete|download|
batch-predict`."""

from __future__ import annotations

from enum import StrEnum
from itertools import islice
from pathlib import Path
from typing import Annotated, Literal, cast

import typer

from shardtrain.cli import exit_codes, render
from shardtrain.cli.context import (
    Output,
    OutputOpt,
    ProgressOpt,
    client_of,
    refuse_ids,
    show_progress,
)
from shardtrain.cli.inputs import load_records

app = typer.Typer(
    help="List, inspect, predict with, undeploy, delete and download models.", no_args_is_help=True
)


class Status(StrEnum):
    deployed = "deployed"
    rejected = "rejected"
    undeployed = "undeployed"


class ArtifactFormat(StrEnum):
    safetensors = "safetensors"
    onnx = "onnx"


@app.command("list")
def list_(
    ctx: typer.Context,
    job: Annotated[str | None, typer.Option("--job", help="Only this job's models.")] = None,
    status: Annotated[
        Status | None, typer.Option(help="Only deployed, rejected or undeployed.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every model, page after page.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Models, newest first."""
    wanted = cast(Literal["deployed", "rejected", "undeployed"], status.value) if status else None
    items = client_of(ctx).models.list(limit=min(limit, 100), job_id=job, status=wanted)
    models = list(items if all_ else islice(items, limit))
    render.show(output, models, render.model_table(models))


@app.command()
def show(ctx: typer.Context, model_id: str, output: OutputOpt = Output.table) -> None:
    """One model: status, holdout metrics, gate, features and classes."""
    model = client_of(ctx).models.get(model_id)
    render.show(output, model, *render.model_detail(model))


@app.command()
def predict(
    ctx: typer.Context,
    model_id: str,
    input: Annotated[
        Path,
        typer.Option("--input", "-i", help="Records: .csv (header row), .json (a list) or .jsonl."),
    ],
    output: OutputOpt = Output.table,
) -> None:
    """Predict from raw records; CSV cells are read as the model's feature dtypes."""
    refuse_ids(output, "models predict")
    client = client_of(ctx)
    typed_text = input.suffix.lower() in {".csv", ".tsv", ".txt"}
    features = client.models.get(model_id).features if typed_text else []
    records = load_records(input, features)
    if not records:
        raise typer.BadParameter(f"{input} holds no records")
    prediction = client.models.predict(model_id, records)
    render.show(output, prediction, render.prediction_table(prediction))


@app.command()
def download(
    ctx: typer.Context,
    model_id: str,
    dest: Annotated[
        Path | None, typer.Option("--dest", help="A file, or a directory for <id>.<format>.")
    ] = None,
    format: Annotated[ArtifactFormat, typer.Option(help="safetensors or onnx.")] = (
        ArtifactFormat.safetensors
    ),
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Download the model's artifact; prints where it was written."""
    refuse_ids(output, "models download")
    fmt = cast(Literal["safetensors", "onnx"], format.value)
    path = client_of(ctx).models.download(
        model_id, dest, format=fmt, progress=show_progress(progress)
    )
    if output is Output.json:
        render.emit_json({"model_id": model_id, "format": fmt, "path": str(path),
                          "bytes": path.stat().st_size})  # fmt: skip
    else:
        render.console().print(f"wrote {path} ({path.stat().st_size} bytes)")


@app.command()
def deploy(ctx: typer.Context, model_id: str, output: OutputOpt = Output.table) -> None:
    """Deploy a model its deploy gate rejected, by hand (the gate's verdict is kept)."""
    model = client_of(ctx).models.deploy(model_id)
    render.show(output, model, *render.model_detail(model))


@app.command()
def undeploy(ctx: typer.Context, model_id: str, output: OutputOpt = Output.table) -> None:
    """Stop serving a model (predict answers 409) until `deploy` serves it again."""
    model = client_of(ctx).models.undeploy(model_id)
    render.show(output, model, *render.model_detail(model))


@app.command()
def delete(ctx: typer.Context, model_id: str, output: OutputOpt = Output.table) -> None:
    """Delete a model, its artifact and its batch predictions (its job stays); exits 5
    while one of its batch predictions is queued or running."""
    deleted = client_of(ctx).models.delete(model_id)
    render.show(output, deleted, f"deleted {deleted.id}")


@app.command("batch-predict")
def batch_predict(
    ctx: typer.Context,
    model_id: str,
    dataset: Annotated[str, typer.Option("--dataset", help="The ready dataset to predict.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until it ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to --wait at most.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Predict every row of a dataset on a worker; --wait exits 10 unless it succeeds.
    Then `shardtrain batch-predictions download MODEL_ID BATCH_ID`."""
    client = client_of(ctx)
    batch = client.models.batch_predict(model_id, dataset)
    if wait:
        # On stderr before waiting: a script whose --wait times out still learns the id.
        typer.echo(f"created {batch.id}", err=True)
        batch = client.models.wait_batch_prediction(model_id, batch.id, timeout=timeout)
    render.show(output, batch, render.batch_detail(batch))
    if wait and batch.status != "succeeded":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)

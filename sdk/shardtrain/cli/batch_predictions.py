"""`shardtrain batch-predictions show|wait|download`: a batch prediction is read under its
model (`models batch-predict` prints both ids)."""

from __future__ import annotations

from enum import StrEnum
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

app = typer.Typer(help="Follow batch predictions and download their output.", no_args_is_help=True)


class OutputFormat(StrEnum):
    parquet = "parquet"
    csv = "csv"


@app.command()
def show(
    ctx: typer.Context, model_id: str, batch_id: str, output: OutputOpt = Output.table
) -> None:
    """One batch prediction: status, dataset, rows predicted, error."""
    batch = client_of(ctx).models.get_batch_prediction(model_id, batch_id)
    render.show(output, batch, render.batch_detail(batch))


@app.command()
def wait(
    ctx: typer.Context,
    model_id: str,
    batch_id: str,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Wait for a batch prediction to end; exit 10 when it failed."""
    batch = client_of(ctx).models.wait_batch_prediction(model_id, batch_id, timeout=timeout)
    render.show(output, batch, render.batch_detail(batch))
    if batch.status != "succeeded":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)


@app.command()
def download(
    ctx: typer.Context,
    model_id: str,
    batch_id: str,
    dest: Annotated[
        Path | None, typer.Option("--dest", help="A file, or a directory for <id>.<format>.")
    ] = None,
    format: Annotated[OutputFormat, typer.Option(help="parquet or csv.")] = OutputFormat.parquet,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Download a succeeded batch prediction's output (row_id, prediction, probabilities);
    prints where it was written. Exit 5 while it has not succeeded."""
    refuse_ids(output, "batch-predictions download")
    fmt = cast(Literal["parquet", "csv"], format.value)
    path = client_of(ctx).models.download_batch_output(
        model_id, batch_id, dest, format=fmt, progress=show_progress(progress)
    )
    size = path.stat().st_size
    if output is Output.json:
        render.emit_json({"id": batch_id, "format": fmt, "path": str(path), "bytes": size})
    else:
        render.console().print(f"wrote {path} ({size} bytes)")

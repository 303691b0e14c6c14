"""`shardtrain datasets upload|import|list|show|preview|delete`."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Annotated

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

app = typer.Typer(help="Upload, list, inspect and delete datasets.", no_args_is_help=True)

LimitOpt = Annotated[int, typer.Option(min=1, help="Show at most this many (newest first).")]
AllOpt = Annotated[bool, typer.Option("--all", help="Every one, fetching page after page.")]


@app.command()
def upload(
    ctx: typer.Context,
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str | None, typer.Option(help="A label; defaults to the file name.")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until ingest ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to --wait at most.")] = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Stream a CSV, Parquet or JSON Lines file; --wait exits 10 if ingest fails."""
    client = client_of(ctx)
    dataset = client.datasets.upload(path, name=name, progress=show_progress(progress))
    if wait:
        # On stderr before waiting: a script whose --wait times out still learns the id.
        typer.echo(f"uploaded {dataset.id}", err=True)
        dataset = client.datasets.wait(dataset.id, timeout=timeout)
    render.show(output, dataset, *render.dataset_detail(dataset))
    if dataset.status == "failed":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)


@app.command("import")
def import_(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="s3://bucket/key, under a prefix the server allows.")],
    name: Annotated[
        str | None, typer.Option(help="A label; defaults to the object's name.")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until ingest ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to --wait at most.")] = None,
    output: OutputOpt = Output.table,
) -> None:
    """Import an object the server reads with its own credentials; --wait exits 10 if the
    copy or the ingest fails."""
    client = client_of(ctx)
    dataset = client.datasets.import_url(url, name=name)
    if wait:
        typer.echo(f"importing {dataset.id}", err=True)
        dataset = client.datasets.wait(dataset.id, timeout=timeout)
    render.show(output, dataset, *render.dataset_detail(dataset))
    if dataset.status == "failed":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)


@app.command("list")
def list_(
    ctx: typer.Context, limit: LimitOpt = 20, all_: AllOpt = False, output: OutputOpt = Output.table
) -> None:
    """Datasets, newest first."""
    items = client_of(ctx).datasets.list(limit=min(limit, 100))
    datasets = list(items if all_ else islice(items, limit))
    render.show(output, datasets, render.dataset_table(datasets))


@app.command()
def show(ctx: typer.Context, dataset_id: str, output: OutputOpt = Output.table) -> None:
    """One dataset, with its columns once ready."""
    dataset = client_of(ctx).datasets.get(dataset_id)
    render.show(output, dataset, *render.dataset_detail(dataset))


@app.command()
def preview(
    ctx: typer.Context,
    dataset_id: str,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Rows to show.")] = 20,
    output: OutputOpt = Output.table,
) -> None:
    """The first rows of a ready dataset."""
    refuse_ids(output, "datasets preview")
    result = client_of(ctx).datasets.preview(dataset_id, limit=limit)
    render.show(output, result, render.records_table(result.data))


@app.command()
def delete(ctx: typer.Context, dataset_id: str, output: OutputOpt = Output.table) -> None:
    """Delete a dataset, its Parquet copy and its shards (models keep working)."""
    deleted = client_of(ctx).datasets.delete(dataset_id)
    render.show(output, deleted, f"deleted {deleted.id}")

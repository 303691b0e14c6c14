"""`shardtrain model-names list|show`: the names jobs train versions under."""

from __future__ import annotations

from itertools import islice
from typing import Annotated

import typer
from rich.table import Table

from shardtrain.cli import render
from shardtrain.cli.context import Output, OutputOpt, client_of
from shardtrain.models import ModelName, ModelNameSummary

app = typer.Typer(
    help="Named models: the versions that jobs with `model_name` added.", no_args_is_help=True
)


def names_table(names: list[ModelNameSummary]) -> Table:
    table = render.list_table("name", "latest version", "updated", "id")
    for n in names:
        table.add_row(n.name, str(n.latest_version), render.when(n.updated_at), n.id)
    return render.pinned(table)


def versions_table(named: ModelName) -> Table:
    table = render.list_table("version", "model", "status", "metrics", "created", wraps="metrics")
    for v in named.versions:
        metrics = " ".join(f"{k}={render.number(x, 3)}" for k, x in v.metrics.items())
        table.add_row(str(v.version), v.model_id, v.status, metrics, render.when(v.created_at))
    return render.pinned(table)


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every name, page after page.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Model names, newest first."""
    items = client_of(ctx).model_names.list(limit=min(limit, 100))
    names = list(items if all_ else islice(items, limit))
    render.show(output, names, names_table(names))


@app.command()
def show(ctx: typer.Context, name: str, output: OutputOpt = Output.table) -> None:
    """A name's versions, oldest first, with each one's model, status and metrics."""
    named = client_of(ctx).model_names.get(name)
    render.show(
        output, named, f"{named.name}: {named.latest_version} version(s)", versions_table(named)
    )

"""`shardtrain sweeps create|list|show|trials|events|cancel|wait`: hyperparameter
sweeps, their trials and their result."""

from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live

from shardtrain.cli import exit_codes, render
from shardtrain.cli.context import (
    Output,
    OutputOpt,
    ProgressOpt,
    client_of,
    refuse_ids,
    show_progress,
)
from shardtrain.cli.inputs import load_spec
from shardtrain.client import Client
from shardtrain.models import Sweep
from shardtrain.spec import SweepSpec

app = typer.Typer(
    help="Hyperparameter sweeps: trials drawn from a space, pruned, the best one delivered.",
    no_args_is_help=True,
)


def _finish(sweep: Sweep, output: Output, *, waited: bool = False) -> None:
    views = render.sweep_detail(sweep)
    render.show(output, sweep, *views, *([render.sweep_result(sweep)] if waited else []))
    if waited and sweep.status != "succeeded":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)


def _wait(client: Client, sweep_id: str, *, progress: bool, timeout: float | None) -> Sweep:
    """The sweep as it ended; with progress, its trials table redrawn on stderr after
    each read until then (and cleared, so what follows is printed once)."""
    if not progress:
        return client.sweeps.wait(sweep_id, progress=False, timeout=timeout)
    console = Console(stderr=True)
    with Live(console=console, transient=True, auto_refresh=False) as live:
        for sweep in client.sweeps.watch(sweep_id, timeout=timeout):
            live.update(render.sweep_live(sweep, console.height), refresh=True)
    return sweep


@app.command()
def create(
    ctx: typer.Context,
    spec: Annotated[
        Path, typer.Option("--spec", "-s", help="The sweep spec, YAML or JSON ('-' for stdin).")
    ],
    dataset: Annotated[
        str | None,
        typer.Option("--dataset", help="Use this dataset id (overrides template.dataset_id)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the trials until the sweep ends.")
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to --wait at most.")] = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Start a sweep; --wait follows its trials and exits 10 unless it succeeds.

    With --wait, the trials table is redrawn live on stderr (on a terminal); at the end
    the sweep, its trials, the best trial and the model are printed."""
    fields = load_spec(spec, "the sweep spec")
    if dataset is not None:
        template = fields.get("template")
        fields["template"] = {
            **(template if isinstance(template, dict) else {}),
            "dataset_id": dataset,
        }
    client = client_of(ctx)
    sweep = client.sweeps.create(SweepSpec.model_validate(fields))
    if wait:
        # On stderr before waiting: a script whose --wait times out still learns the id.
        typer.echo(f"created {sweep.id}", err=True)
        sweep = _wait(client, sweep.id, progress=show_progress(progress), timeout=timeout)
    _finish(sweep, output, waited=wait)


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every sweep, page after page.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Sweeps, newest first: trials ended of the budget, and the best score."""
    items = client_of(ctx).sweeps.list(limit=min(limit, 100))
    sweeps = list(items if all_ else islice(items, limit))
    render.show(output, sweeps, render.sweep_table(sweeps))


@app.command()
def show(ctx: typer.Context, sweep_id: str, output: OutputOpt = Output.table) -> None:
    """One sweep: status, best trial, model, then every trial.

    The trials per state, the best trial's score and params, the final job (with a
    model name, a gate or cross-validation) and the model the sweep delivered."""
    _finish(client_of(ctx).sweeps.get(sweep_id), output)


# `sweeps get` reads as the SDK's `sweeps.get`; `show` is the name every other group uses.
app.command("get", hidden=True)(show)


@app.command()
def trials(ctx: typer.Context, sweep_id: str, output: OutputOpt = Output.table) -> None:
    """Every trial, by number: state, score, the values drawn, seconds.

    With cross-validation the score is the folds' mean ± their deviation. With
    --output json, the `sweep.trial` objects."""
    refuse_ids(output, "sweeps trials")
    found = client_of(ctx).sweeps.trials(sweep_id)
    render.show(output, found, render.trials_table(found))


@app.command()
def events(
    ctx: typer.Context,
    sweep_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream new events until the sweep ends.")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """A sweep's events, oldest first. With --output json, one JSON object a line."""
    stream = client_of(ctx).sweeps.events(sweep_id, follow=follow)
    render.show_events(output, stream, follow=follow)


@app.command()
def cancel(ctx: typer.Context, sweep_id: str, output: OutputOpt = Output.table) -> None:
    """Cancel a running sweep and its running trials (cancelling twice is fine).

    Done trials and their models stay; exits 5 once the sweep succeeded or failed."""
    _finish(client_of(ctx).sweeps.cancel(sweep_id), output)


@app.command()
def wait(
    ctx: typer.Context,
    sweep_id: str,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most.")] = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Wait for a sweep to end; exit 10 when it failed or was cancelled.

    On a terminal its trials table is redrawn live on stderr until then."""
    sweep = _wait(client_of(ctx), sweep_id, progress=show_progress(progress), timeout=timeout)
    _finish(sweep, output, waited=True)

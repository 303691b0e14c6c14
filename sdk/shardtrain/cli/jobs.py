"""`shardtrain jobs create|list|show|events|cancel|delete|rerun|resume|metrics|wait`."""

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
from shardtrain.cli.inputs import load_spec
from shardtrain.models import Job
from shardtrain.spec import JobSpec

app = typer.Typer(help="Create, follow, inspect and cancel training jobs.", no_args_is_help=True)


def _finish(job: Job, output: Output) -> None:
    render.show(output, job, render.job_detail(job))


@app.command()
def create(
    ctx: typer.Context,
    spec: Annotated[
        Path, typer.Option("--spec", "-s", help="The job spec, YAML or JSON ('-' for stdin).")
    ],
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Use this dataset id (overrides the spec).")
    ] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to --wait at most.")] = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Queue a job; --wait follows it and exits 10 unless it succeeds."""
    fields = load_spec(spec)
    if dataset is not None:
        fields["dataset_id"] = dataset
    client = client_of(ctx)
    job = client.jobs.create(JobSpec.model_validate(fields))
    if wait:
        # On stderr before waiting: a script whose --wait times out still learns the id.
        typer.echo(f"created {job.id}", err=True)
        job = client.jobs.wait(job.id, progress=show_progress(progress), timeout=timeout)
    _finish(job, output)
    if wait and job.status != "succeeded":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)


@app.command("list")
def list_(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every job, page after page.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Jobs, newest first."""
    items = client_of(ctx).jobs.list(limit=min(limit, 100))
    jobs = list(items if all_ else islice(items, limit))
    render.show(output, jobs, render.job_table(jobs))


@app.command()
def show(ctx: typer.Context, job_id: str, output: OutputOpt = Output.table) -> None:
    """One job: status, progress, latest metrics, model, error."""
    _finish(client_of(ctx).jobs.get(job_id), output)


@app.command()
def events(
    ctx: typer.Context,
    job_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream new events until the job ends.")
    ] = False,
    output: OutputOpt = Output.table,
) -> None:
    """A job's events, oldest first. With --output json, one JSON object a line."""
    stream = client_of(ctx).jobs.events(job_id, follow=follow)
    render.show_events(output, stream, follow=follow)


@app.command()
def cancel(ctx: typer.Context, job_id: str, output: OutputOpt = Output.table) -> None:
    """Cancel a queued or running job (cancelling a cancelled one is fine)."""
    _finish(client_of(ctx).jobs.cancel(job_id), output)


@app.command()
def delete(ctx: typer.Context, job_id: str, output: OutputOpt = Output.table) -> None:
    """Delete a finished job and its data (its dataset stays); exits 5 while it runs or
    while its model exists (delete the model first)."""
    deleted = client_of(ctx).jobs.delete(job_id)
    render.show(output, deleted, f"deleted {deleted.id}")


@app.command()
def rerun(
    ctx: typer.Context,
    job_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the new job ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to --wait at most.")] = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Queue a new job (a new model version) with an earlier job's spec; --wait follows
    it and exits 10 unless it succeeds."""
    client = client_of(ctx)
    job = client.jobs.rerun(job_id)
    if wait:
        typer.echo(f"created {job.id}", err=True)
        job = client.jobs.wait(job.id, progress=show_progress(progress), timeout=timeout)
    _finish(job, output)
    if wait and job.status != "succeeded":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)


@app.command()
def resume(
    ctx: typer.Context,
    job_id: str,
    wait: Annotated[bool, typer.Option("--wait", help="Wait until the job ends.")] = False,
    timeout: Annotated[float | None, typer.Option(help="Seconds to --wait at most.")] = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Run a failed or cancelled job again from the checkpoint of its last merged round
    (the same job: no new job, no new version); exits 5 when it cannot be resumed, and
    with --wait follows it and exits 10 unless it succeeds."""
    client = client_of(ctx)
    job = client.jobs.resume(job_id)
    if wait:
        typer.echo(f"resumed {job.id} from round {job.progress.round}", err=True)
        job = client.jobs.wait(job.id, progress=show_progress(progress), timeout=timeout)
    _finish(job, output)
    if wait and job.status != "succeeded":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)


@app.command()
def metrics(ctx: typer.Context, job_id: str, output: OutputOpt = Output.table) -> None:
    """Per-round train and validation loss and metrics, with sparklines of the losses."""
    refuse_ids(output, "jobs metrics")
    rounds = client_of(ctx).jobs.metrics(job_id)
    render.show(output, rounds, render.metrics_table(rounds))


@app.command()
def wait(
    ctx: typer.Context,
    job_id: str,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait at most.")] = None,
    progress: ProgressOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Wait for a job to end; exit 10 when it failed or was cancelled."""
    job = client_of(ctx).jobs.wait(job_id, progress=show_progress(progress), timeout=timeout)
    _finish(job, output)
    if job.status != "succeeded":
        raise typer.Exit(exit_codes.UNSUCCESSFUL)

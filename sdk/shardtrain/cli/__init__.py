"""The `shardtrain` command: datasets, jobs, models, batch predictions and sweeps, on top
of the SDK only.

Every failure ends with one line on stderr and an exit code from
`shardtrain.cli.exit_codes` (also listed in docs/sdk.md)."""

from __future__ import annotations

from typing import Annotated, Any

import pydantic
import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperGroup

from shardtrain._version import __version__
from shardtrain.cli import (
    batch_predictions,
    datasets,
    exit_codes,
    jobs,
    model_names,
    models,
    sweeps,
)
from shardtrain.cli.context import Settings
from shardtrain.errors import ShardtrainError
from shardtrain.spec import field_path


def _fail(message: str, code: int) -> typer.Exit:
    line = Text.assemble(("error", "bold red"), f": {message}")  # the message is not markup
    Console(stderr=True).print(line, highlight=False, soft_wrap=True)
    return typer.Exit(code)


class _ErrorMappingGroup(TyperGroup):
    """Turns SDK errors into one stderr line and a documented exit code, whichever
    subcommand raised them."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ShardtrainError as exc:
            raise _fail(str(exc), exit_codes.exit_code_for(exc)) from None
        except pydantic.ValidationError as exc:
            # A spec file the SDK's JobSpec or SweepSpec refuses, before any request.
            problems = "; ".join(
                f"{field_path(e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors()
            )
            raise _fail(f"invalid {exc.title}: {problems}", exit_codes.INVALID) from None
        except KeyboardInterrupt:
            raise _fail("interrupted", exit_codes.INTERRUPTED) from None
        finally:
            if isinstance(ctx.obj, Settings):
                ctx.obj.close()


app = typer.Typer(
    cls=_ErrorMappingGroup,
    help="Shardtrain: upload datasets, train sharded jobs, sweep their hyperparameters, "
    "predict with the models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(datasets.app, name="datasets")
app.add_typer(jobs.app, name="jobs")
app.add_typer(models.app, name="models")
app.add_typer(model_names.app, name="model-names")
app.add_typer(batch_predictions.app, name="batch-predictions")
app.add_typer(sweeps.app, name="sweeps")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"shardtrain {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="SHARDTRAIN_API_KEY", help="API key (sk_…).", show_default=False),
    ] = None,
    base_url: Annotated[
        str | None,
        typer.Option(
            envvar="SHARDTRAIN_BASE_URL",
            help="Server URL [default: http://$SHARDTRAIN_HOST:$SHARDTRAIN_PORT, else "
            "http://127.0.0.1:8000].",
        ),
    ] = None,
    max_retries: Annotated[
        int, typer.Option(min=0, help="Retries on connection errors, 429 and 5xx.")
    ] = 3,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    ctx.obj = Settings(api_key=api_key, base_url=base_url, max_retries=max_retries)


def main() -> None:
    app()


__all__ = ["app", "main"]

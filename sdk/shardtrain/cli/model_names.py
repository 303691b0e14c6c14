"""`shardtrain model-names list|show|set-alias|delete-alias|promote|history`: the names
jobs train versions under, and their aliases."""

from __future__ import annotations

from itertools import islice
from typing import Annotated

import typer
from rich.console import RenderableType
from rich.table import Table

from shardtrain.cli import render
from shardtrain.cli.context import Output, OutputOpt, client_of, refuse_ids
from shardtrain.models import ModelAlias, ModelAliasChange, ModelName, ModelNameSummary

app = typer.Typer(
    help="Named models: the versions that jobs with `model_name` added, and their aliases.",
    no_args_is_help=True,
)

ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", help="Why; kept in the alias's history. Required for champion."),
]


def names_table(names: list[ModelNameSummary]) -> Table:
    table = render.list_table("name", "latest version", "updated", "id")
    for n in names:
        table.add_row(n.name, str(n.latest_version), render.when(n.updated_at), n.id)
    return render.pinned(table)


# Under this width `show` leaves out each version's aliases (the aliases table under it
# lists them) and who moved each alias and when (`history` has them), so that ids,
# dates and reasons stay whole in 80 columns.
ALIASES_WIDE = 110
NARROW_ALIASES = ("alias", "version", "model", "reason")


def _wide(width: int | None) -> bool:
    return (render.console().width if width is None else width) >= ALIASES_WIDE


def aliases_table(aliases: list[ModelAlias], width: int | None = None) -> Table:
    wide = _wide(width)
    names = ("alias", "version", "model", "set by", "updated", "reason")
    table = render.list_table(*(n for n in names if wide or n in NARROW_ALIASES), wraps="reason")
    for a in aliases:
        who = (a.set_by, render.when(a.updated_at)) if wide else ()
        table.add_row(a.alias, str(a.version), a.model_id, *who, a.reason or "")
    return render.pinned(table)


def versions_table(named: ModelName, width: int | None = None) -> Table:
    wide = _wide(width)
    names = ("version", "model", "status", "aliases", "metrics", "created")
    table = render.list_table(*(n for n in names if wide or n != "aliases"), wraps="metrics")
    for v in named.versions:
        metrics = " ".join(f"{k}={render.number(x, 3)}" for k, x in v.metrics.items())
        aliases = (",".join(v.aliases),) if wide else ()
        table.add_row(
            str(v.version), v.model_id, v.status, *aliases, metrics, render.when(v.created_at)
        )
    return render.pinned(table)


def _version(version: int | None) -> str:
    return "-" if version is None else str(version)


def changes_table(changes: list[ModelAliasChange], width: int | None = None) -> Table:
    wide = _wide(width)
    table = render.list_table("time", "alias", "from", "to", "set by", "reason", wraps="reason")
    for c in changes:
        table.add_row(
            render.when(c.created_at, seconds=wide), c.alias, _version(c.from_version),
            _version(c.to_version), c.set_by, c.reason or "",
        )  # fmt: skip
    return render.pinned(table)


def _alias_line(name: str, a: ModelAlias, verb: str = "names") -> str:
    line = f"{name}@{a.alias} {verb} version {a.version} ({a.model_id}), set by {a.set_by}"
    return f"{line}: {a.reason}" if a.reason else line


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
    """A name's versions, oldest first, with each one's model, status, aliases and
    metrics; then its aliases."""
    named = client_of(ctx).model_names.get(name)
    aliases: list[RenderableType] = (
        ["aliases:", aliases_table(named.aliases)] if named.aliases else ["aliases: none"]
    )
    render.show(
        output,
        named,
        f"{named.name}: {named.latest_version} version(s)",
        versions_table(named),
        *aliases,
    )


@app.command("set-alias")
def set_alias(
    ctx: typer.Context,
    name: str,
    alias: str,
    version: Annotated[int, typer.Argument(min=1, help="The version the alias is to name.")],
    reason: ReasonOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Create or move an alias. Moving `champion` needs --reason (exits 6 without one)
    and a deployed version (exits 5 otherwise); see `promote`."""
    refuse_ids(output, "model-names set-alias")
    moved = client_of(ctx).model_names.set_alias(name, alias, version, reason)
    render.show(output, moved, _alias_line(name, moved))


@app.command()
def promote(
    ctx: typer.Context,
    name: str,
    version: Annotated[int, typer.Argument(min=1, help="The version to make champion.")],
    reason: Annotated[str, typer.Option("--reason", help="Why; kept in the champion's history.")],
    output: OutputOpt = Output.table,
) -> None:
    """Make a deployed version the champion by hand: a promotion or a rollback."""
    refuse_ids(output, "model-names promote")
    champion = client_of(ctx).model_names.promote(name, version, reason)
    render.show(output, champion, _alias_line(name, champion))


@app.command("delete-alias")
def delete_alias(
    ctx: typer.Context,
    name: str,
    alias: str,
    reason: ReasonOpt = None,
    output: OutputOpt = Output.table,
) -> None:
    """Remove an alias (`champion` needs --reason); predicting by it then exits 4."""
    refuse_ids(output, "model-names delete-alias")
    removed = client_of(ctx).model_names.delete_alias(name, alias, reason)
    render.show(output, removed, f"deleted {_alias_line(name, removed, 'that named')}")


@app.command()
def history(
    ctx: typer.Context,
    name: str,
    limit: Annotated[int, typer.Option(min=1, help="Show at most this many.")] = 20,
    all_: Annotated[bool, typer.Option("--all", help="Every change, page after page.")] = False,
    output: OutputOpt = Output.table,
) -> None:
    """Every move of the name's aliases, newest first: from which version to which
    (`-`: new or deleted), by whom (a key's id, or the job whose champion gate decided)
    and why."""
    items = client_of(ctx).model_names.alias_changes(name, limit=min(limit, 100))
    changes = list(items if all_ else islice(items, limit))
    render.show(output, changes, changes_table(changes))

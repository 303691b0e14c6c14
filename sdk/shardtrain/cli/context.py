"""What every command shares: the client built from the root options, and `--output`."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Annotated

import typer

from shardtrain.client import Client


class Output(StrEnum):
    table = "table"
    json = "json"
    # The object's id alone (one a line for a list), for `DS=$(shardtrain … -o id)`.
    id = "id"


OutputOpt = Annotated[
    Output,
    typer.Option(
        "--output",
        "-o",
        envvar="SHARDTRAIN_OUTPUT",
        help="table for people, json for scripts (stdout holds only the JSON), "
        "id for shell variables (the id alone, one a line for a list).",
    ),
]

ProgressOpt = Annotated[
    bool | None,
    typer.Option(
        "--progress/--no-progress", help="Show a progress bar on stderr [default: if a terminal]."
    ),
]


def show_progress(flag: bool | None) -> bool:
    return sys.stderr.isatty() if flag is None else flag


@dataclass
class Settings:
    api_key: str | None = None
    base_url: str | None = None
    max_retries: int = 3
    clients: list[Client] = field(default_factory=list)

    def client(self) -> Client:
        if not self.clients:
            self.clients.append(Client(self.api_key, self.base_url, max_retries=self.max_retries))
        return self.clients[0]

    def close(self) -> None:
        for client in self.clients:
            client.close()


def client_of(ctx: typer.Context) -> Client:
    settings = ctx.find_root().obj
    assert isinstance(settings, Settings)
    return settings.client()


def refuse_ids(output: Output, command: str) -> None:
    """Before any work: a command whose result is no object has no id to print."""
    if output is Output.id:
        raise typer.BadParameter(f"{command} prints no object with an id", param_hint="'--output'")

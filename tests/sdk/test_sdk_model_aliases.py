"""Aliases of named models and the champion gate through the SDK (sync and async) and the
CLI, against the real app: set, moved, deleted, audited, predicted by."""

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pyarrow as pa
import pytest
from rich.console import Console
from sample_data import iris_table, table_to_csv
from sdk_harness import FAST, Served
from typer.testing import CliRunner, Result

from app.config import Settings
from app.main import create_app
from shardtrain import (
    AsyncClient,
    Comparison,
    ConflictError,
    DeployGate,
    JobSpec,
    ModelAlias,
    ModelAliasChange,
    NotFoundError,
    ValidationError,
)
from shardtrain.cli import app as cli
from shardtrain.cli import exit_codes, render
from shardtrain.cli.context import Settings as CLISettings
from shardtrain.cli.model_names import aliases_table, changes_table

TrainJob = Callable[..., dict[str, Any]]
IRIS = iris_table()
IRIS_CSV = table_to_csv(IRIS)
SPEC: dict[str, Any] = {
    "target": "species",
    "distribution": {"shards": 1},
    "training": {"rounds": 2, "learning_rate": 0.1},
}
RECORDS = IRIS.drop_columns(["species"]).slice(0, 4).to_pylist()


@pytest.fixture
def churn(train_job: TrainJob) -> list[str]:
    """The model ids of three versions of `churn`: 1 and 2 deployed, 3 rejected."""
    jobs = [
        train_job("iris.csv", IRIS_CSV, **SPEC, model_name="churn"),
        train_job("iris.csv", IRIS_CSV, **{**SPEC, "training": {"rounds": 4, "seed": 7}},
                  model_name="churn"),
        train_job("iris.csv", IRIS_CSV, **SPEC, model_name="churn",
                  deploy_if={"metric": "accuracy", "min": 1.0001}),
    ]  # fmt: skip
    assert [j["status"] for j in jobs] == ["succeeded"] * 3
    return [str(j["model_id"]) for j in jobs]


@pytest.fixture
def run(served: Served, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Result]:
    # The CLI's own client would dial a port; this one reaches the app in-process.
    monkeypatch.setattr(CLISettings, "client", lambda self: served.sdk)
    return lambda *args: CliRunner().invoke(cli, list(args))


def test_an_alias_is_set_moved_predicted_by_and_deleted(served: Served, churn: list[str]) -> None:
    names = served.sdk.model_names
    staging = names.set_alias("churn", "staging", 1)
    assert isinstance(staging, ModelAlias)
    assert (staging.alias, staging.version, staging.model_id) == ("staging", 1, churn[0])
    assert staging.set_by.startswith("key_") and staging.reason is None
    assert names.predict_alias("churn", "staging", RECORDS) == names.predict("churn", 1, RECORDS)

    moved = names.set_alias("churn", "staging", 2, reason="v2 is better")
    assert (moved.version, moved.model_id, moved.reason) == (2, churn[1], "v2 is better")
    assert names.predict_alias("churn", "staging", RECORDS) == names.predict("churn", 2, RECORDS)
    table = pa.Table.from_pylist(RECORDS)
    by_alias = names.predict_alias_table("churn", "staging", table)
    assert by_alias.equals(names.predict_table("churn", 2, table))
    assert not by_alias.equals(names.predict_table("churn", 1, table))
    named = names.get("churn")
    assert named.aliases == [moved]
    assert [v.aliases for v in named.versions] == [[], ["staging"], []]

    removed = names.delete_alias("churn", "staging", reason="done testing")
    assert (removed.alias, removed.version) == ("staging", 2)
    assert names.get("churn").aliases == []
    with pytest.raises(NotFoundError) as gone:
        names.predict_alias("churn", "staging", RECORDS)
    assert gone.value.param == "alias"
    with pytest.raises(NotFoundError) as again:
        names.delete_alias("churn", "staging")
    assert again.value.param == "alias"

    changes = list(names.alias_changes("churn", limit=1))  # one a page: three pages
    assert all(isinstance(c, ModelAliasChange) for c in changes)
    assert [(c.alias, c.from_version, c.to_version, c.reason) for c in changes] == [
        ("staging", 2, None, "done testing"),
        ("staging", 1, 2, "v2 is better"),
        ("staging", None, 1, None),
    ]
    assert {c.set_by for c in changes} == {staging.set_by}
    assert len({c.id for c in changes}) == 3 and all(c.id.startswith("mac_") for c in changes)
    page = names.alias_changes_page("churn", limit=2)
    assert [c.id for c in page.data] == [c.id for c in changes[:2]] and page.has_more
    rest = names.alias_changes_page("churn", limit=2, after=page.data[-1].id)
    assert [c.id for c in rest.data] == [changes[2].id] and not rest.has_more


def test_the_champion_needs_a_reason_and_a_deployed_version(
    served: Served, churn: list[str]
) -> None:
    names = served.sdk.model_names
    with pytest.raises(ValidationError) as no_reason:
        names.set_alias("churn", "champion", 1)
    assert no_reason.value.param == "reason"
    with pytest.raises(ValidationError) as empty_reason:
        names.promote("churn", 1, "")
    assert empty_reason.value.param == "reason"
    with pytest.raises(ConflictError) as rejected:
        names.promote("churn", 3, "v3 looks fine to me")
    assert (rejected.value.code, rejected.value.param) == ("version_not_deployed", "version")
    assert names.get("churn").aliases == []
    assert list(names.alias_changes("churn")) == []

    champion = names.promote("churn", 2, "v2 won the A/B test")
    assert (champion.alias, champion.version, champion.model_id) == ("champion", 2, churn[1])
    assert champion.reason == "v2 won the A/B test"
    assert names.predict_alias("churn", "champion", RECORDS).model_id == churn[1]
    rolled_back = names.promote("churn", 1, "v2 mislabels returns")
    assert (rolled_back.version, rolled_back.model_id) == (1, churn[0])
    assert names.predict_alias("churn", "champion", RECORDS).model_id == churn[0]
    with pytest.raises(ValidationError) as delete_without:
        names.delete_alias("churn", "champion")
    assert delete_without.value.param == "reason"
    assert [a.version for a in names.get("churn").aliases] == [1]
    assert [(c.from_version, c.to_version) for c in names.alias_changes("churn")] == [
        (2, 1),
        (None, 2),
    ]


def test_missing_names_versions_and_aliases_are_not_found(served: Served, churn: list[str]) -> None:
    names = served.sdk.model_names
    for call, param in [
        (lambda: names.set_alias("nope", "staging", 1), "name"),
        (lambda: names.set_alias("churn", "staging", 9), "version"),
        (lambda: names.delete_alias("nope", "staging"), "name"),
        (lambda: names.predict_alias("churn", "canary", RECORDS), "alias"),
        (lambda: names.predict_alias("nope", "canary", RECORDS), "name"),
        (lambda: list(names.alias_changes("nope")), "name"),
    ]:
        with pytest.raises(NotFoundError) as missing:
            call()
        assert missing.value.param == param


def test_the_spec_mirrors_the_champion_gates_rules() -> None:
    gate = DeployGate(metric="accuracy", beats="champion", by=0.01)
    spec = JobSpec(dataset_id="ds_1", target="y", model_name="churn", deploy_if=gate)
    assert spec.to_request()["deploy_if"] == {"metric": "accuracy", "beats": "champion", "by": 0.01}
    plain = JobSpec(dataset_id="ds_1", target="y", deploy_if=DeployGate(metric="r2", min=0.5))
    assert plain.to_request()["deploy_if"] == {"metric": "r2", "min": 0.5}
    assert DeployGate(metric="accuracy", beats="champion").by is None
    with pytest.raises(ValueError, match="`min`, `max` or `beats`"):
        DeployGate(metric="accuracy")
    with pytest.raises(ValueError, match="margin of `beats`"):
        DeployGate(metric="accuracy", min=0.5, by=0.01)
    with pytest.raises(ValueError, match="greater than or equal to 0"):
        DeployGate(metric="accuracy", beats="champion", by=-0.1)
    with pytest.raises(ValueError, match="beats"):
        DeployGate.model_validate({"metric": "accuracy", "beats": "production"})


def test_the_champion_gate_is_read_back_with_its_comparison(
    served: Served, train_job: TrainJob, run: Callable[..., Result]
) -> None:
    gate = DeployGate(metric="accuracy", beats="champion", by=0.01)
    deploy_if = JobSpec(dataset_id="ds_1", target="y", deploy_if=gate).to_request()["deploy_if"]
    job = train_job("iris.csv", IRIS_CSV, **SPEC, model_name="gated", deploy_if=deploy_if)
    assert job["status"] == "succeeded", job
    model = served.sdk.models.get(job["model_id"])
    assert model.gate is not None
    assert (model.gate.beats, model.gate.by, model.gate.passed) == ("champion", 0.01, True)
    comparison = model.comparison
    assert isinstance(comparison, Comparison)
    assert (comparison.metric, comparison.by, comparison.passed) == ("accuracy", 0.01, True)
    assert comparison.champion_version is None and comparison.champion is None
    assert comparison.rows > 0 and comparison.reason == "no champion yet"
    named = served.sdk.model_names.get("gated")
    assert named.versions[0].comparison == comparison
    assert named.versions[0].aliases == ["champion"]
    assert [(a.alias, a.set_by) for a in named.aliases] == [("champion", job["id"])]
    assert [c.set_by for c in served.sdk.model_names.alias_changes("gated")] == [job["id"]]

    shown = run("models", "show", job["model_id"])
    assert shown.exit_code == 0, shown.output
    assert "accuracy beats champion by 0.0100" in shown.output
    assert "promoted: no champion yet" in shown.output


def test_async_aliases(settings: Settings, api_key: str, churn: list[str]) -> None:
    table = pa.Table.from_pylist(RECORDS)

    async def scenario() -> dict[str, Any]:
        transport = httpx.ASGITransport(app=create_app(settings))
        async with httpx.AsyncClient(transport=transport) as http:
            client = AsyncClient(api_key, "http://sdk.test", http_client=http, retry=FAST)
            names = client.model_names
            staging = await names.set_alias("churn", "staging", 2, reason="try v2")
            by_alias = await names.predict_alias("churn", "staging", RECORDS)
            by_version = await names.predict("churn", 2, RECORDS)
            alias_table = await names.predict_alias_table("churn", "staging", table)
            version_table = await names.predict_table("churn", 2, table)
            with pytest.raises(ValidationError) as no_reason:
                await names.set_alias("churn", "champion", 1)
            champion = await names.promote("churn", 1, "v1 is steadier")
            aliases = [(a.alias, a.version) for a in (await names.get("churn")).aliases]
            removed = await names.delete_alias("churn", "staging")
            changes = [c async for c in names.alias_changes("churn", limit=1)]
            page = await names.alias_changes_page("churn", limit=2)
            return {
                "staging": (staging.version, staging.model_id, staging.reason),
                "same answer": by_alias == by_version,
                "same table": alias_table.equals(version_table),
                "no reason": no_reason.value.param,
                "champion": (champion.version, champion.reason),
                "aliases": aliases,
                "removed": (removed.alias, removed.version),
                "changes": [(c.alias, c.from_version, c.to_version) for c in changes],
                "set by key": all(c.set_by.startswith("key_") for c in changes),
                "page": (len(page.data), page.has_more),
            }

    assert asyncio.run(scenario()) == {
        "staging": (2, churn[1], "try v2"),
        "same answer": True,
        "same table": True,
        "no reason": "reason",
        "champion": (1, "v1 is steadier"),
        "aliases": [("champion", 1), ("staging", 2)],
        "removed": ("staging", 2),
        "changes": [("staging", 2, None), ("champion", None, 1), ("staging", None, 2)],
        "set by key": True,
        "page": (2, True),
    }


def test_cli_sets_promotes_shows_deletes_and_lists_history(
    run: Callable[..., Result], churn: list[str]
) -> None:
    set_json = run("model-names", "set-alias", "churn", "staging", "1", "-o", "json")
    assert set_json.exit_code == 0, set_json.output
    alias = json.loads(set_json.stdout)
    assert (alias["alias"], alias["version"], alias["model_id"]) == ("staging", 1, churn[0])
    assert alias["set_by"].startswith("key_")
    moved = run("model-names", "set-alias", "churn", "staging", "2", "--reason", "try v2")
    assert moved.exit_code == 0, moved.output
    assert f"churn@staging names version 2 ({churn[1]})" in moved.stdout
    assert "try v2" in moved.stdout

    promoted = run(
        "model-names", "promote", "churn", "1", "--reason", "v1 is steadier", "-o", "json"
    )
    assert promoted.exit_code == 0, promoted.output
    assert json.loads(promoted.stdout)["alias"] == "champion"
    assert json.loads(promoted.stdout)["reason"] == "v1 is steadier"
    without = run("model-names", "promote", "churn", "2")
    assert without.exit_code == exit_codes.USAGE and "--reason" in without.output
    by_hand = run("model-names", "set-alias", "churn", "champion", "2")
    assert by_hand.exit_code == exit_codes.INVALID and "reason" in by_hand.output
    rejected = run("model-names", "promote", "churn", "3", "--reason", "why not")
    assert rejected.exit_code == exit_codes.CONFLICT, rejected.output
    no_ids = run("model-names", "set-alias", "churn", "canary", "1", "-o", "id")
    assert no_ids.exit_code == exit_codes.USAGE and no_ids.stdout == ""

    shown = json.loads(run("model-names", "show", "churn", "-o", "json").stdout)
    assert [(a["alias"], a["version"]) for a in shown["aliases"]] == [
        ("champion", 1),
        ("staging", 2),
    ]
    assert [v["aliases"] for v in shown["versions"]] == [["champion"], ["staging"], []]
    table = run("model-names", "show", "churn")
    assert table.exit_code == 0, table.output
    rows = table.stdout.splitlines()
    staging_row = next(line for line in rows if line.startswith("staging "))
    assert churn[1] in staging_row and "try v2" in staging_row
    champion_row = next(line for line in rows if line.startswith("champion "))
    assert churn[0] in champion_row and "v1 is steadier" in champion_row

    deleted = run(
        "model-names", "delete-alias", "churn", "staging", "--reason", "done", "-o", "json"
    )
    assert deleted.exit_code == 0, deleted.output
    assert (json.loads(deleted.stdout)["alias"], json.loads(deleted.stdout)["version"]) == (
        "staging",
        2,
    )
    assert "aliases:" in run("model-names", "show", "churn").stdout

    history = run("model-names", "history", "churn", "-o", "json")
    assert history.exit_code == 0, history.output
    changes = json.loads(history.stdout)
    assert [(c["alias"], c["from_version"], c["to_version"]) for c in changes] == [
        ("staging", 2, None),
        ("champion", None, 1),
        ("staging", 1, 2),
        ("staging", None, 1),
    ]
    assert all(c["set_by"].startswith("key_") for c in changes)
    assert run("model-names", "history", "churn", "--limit", "1", "-o", "id").stdout == (
        f"{changes[0]['id']}\n"
    )
    history_table = run("model-names", "history", "churn").stdout
    # A reason folds onto lines whose other cells are blank: read it with those removed.
    words = " ".join(history_table.split())
    assert "staging 2 - " in words and "champion - 1 " in words
    assert "done" in words and "v1 is steadier" in words

    for args in (
        ("model-names", "history", "nope"),
        ("model-names", "set-alias", "nope", "staging", "1"),
        ("model-names", "set-alias", "churn", "staging", "9"),
        ("model-names", "delete-alias", "churn", "staging"),
        ("model-names", "promote", "nope", "1", "--reason", "r"),
    ):
        missing = run(*args)
        assert missing.exit_code == exit_codes.NOT_FOUND, (args, missing.output)


@pytest.mark.parametrize("width", [80, 120])
def test_alias_tables_keep_ids_versions_and_times_whole(width: int) -> None:
    alias = ModelAlias(
        alias="champion", version=12, model_id="mdl_" + "a" * 24, set_by="job_" + "b" * 24,
        reason="accuracy 0.9300 beat champion version 11's 0.9100 by 0.0200 (at least 0.005) "
        "on 3000 holdout rows", updated_at=1767312100,
    )  # fmt: skip
    change = ModelAliasChange(
        id="mac_" + "c" * 24, alias="staging", from_version=None, to_version=3,
        set_by="key_" + "d" * 24, reason="canary for the EU region", created_at=1767312100,
    )  # fmt: skip
    wide = width >= 110
    for table, cells in [
        (aliases_table([alias], width), ["champion", "12", alias.model_id]),
        (changes_table([change], width), ["staging", "-", "3", change.set_by]),
    ]:
        console = Console(width=width, record=True, markup=False)
        with console.capture() as captured:
            console.print(table)
        text = captured.get()
        assert "…" not in text and max(map(len, text.splitlines())) <= width
        row = text.splitlines()[1]
        for cell in cells:
            assert f" {cell} " in f" {row} ", (cell, row)
    assert (alias.set_by in _printed(aliases_table([alias], width), width)) is wide
    moved = _printed(changes_table([change], width), width).splitlines()[1]
    assert moved.startswith(f"{render.when(change.created_at, seconds=wide)} ")
    assert (render.when(change.created_at) in moved) is wide  # seconds only when wide


def _printed(table: Any, width: int) -> str:
    console = Console(width=width, record=True, markup=False)
    with console.capture() as captured:
        console.print(table)
    return captured.get()

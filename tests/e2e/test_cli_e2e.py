"""The `shardtrain` CLI against the live system: upload, a job with --wait, metrics,
events, predict and download, with the exit codes that docs/sdk.md promises."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from dbsetup import issue_key
from e2e_system import System
from sample_data import iris_table, table_to_csv
from typer.testing import CliRunner

from app.runner import free_local_port
from shardtrain.cli import app
from shardtrain.cli.sparkline import BLOCKS

pytestmark = pytest.mark.e2e

IRIS_ROWS = [
    {"sepal_length": 5.1, "sepal_width": 3.5, "petal_length": 1.4, "petal_width": 0.2},
    {"sepal_length": 6.0, "sepal_width": 2.9, "petal_length": 4.5, "petal_width": 1.5},
    {"sepal_length": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3},
]


def env_for(system: System, **extra: str) -> dict[str, str]:
    # A tenant of its own: other e2e tests' unfinished jobs never count against its quota.
    key = issue_key(system.processes.env["SHARDTRAIN_DATABASE_URL"], "cli-e2e")
    return {"SHARDTRAIN_API_KEY": key, "SHARDTRAIN_BASE_URL": system.base_url, **extra}


class Shell:
    def __init__(self, system: System) -> None:
        self.runner = CliRunner()
        self.env = env_for(system, COLUMNS="200")

    def __call__(self, *args: str, code: int = 0) -> str:
        result = self.runner.invoke(app, list(args), env=self.env)
        assert result.exit_code == code, (args, result.exit_code, result.output, result.exception)
        return result.stdout

    def json(self, *args: str, code: int = 0) -> object:
        return json.loads(self(*args, "--output", "json", code=code))


@pytest.fixture
def sh(system: System) -> Shell:
    return Shell(system)


def test_upload_train_wait_metrics_predict_download(
    sh: Shell, system: System, tmp_path: Path
) -> None:
    data = tmp_path / "iris.csv"
    data.write_bytes(table_to_csv(iris_table()))
    dataset = sh.json("datasets", "upload", str(data), "--name", "iris", "--wait")
    assert isinstance(dataset, dict)
    assert (dataset["status"], dataset["rows"], dataset["name"]) == ("ready", 150, "iris")
    listed = sh.json("datasets", "list", "--all")
    assert isinstance(listed, list) and dataset["id"] in [d["id"] for d in listed]
    assert sh.json("datasets", "show", dataset["id"])["id"] == dataset["id"]  # type: ignore[index]
    preview = sh.json("datasets", "preview", dataset["id"], "--limit", "2")
    assert isinstance(preview, dict) and len(preview["data"]) == 2
    assert "petal_width" in sh("datasets", "preview", dataset["id"], "--limit", "2")

    spec = tmp_path / "job.yaml"
    spec.write_text(
        yaml.safe_dump(
            {
                "dataset_id": "replaced by --dataset",
                "target": "species",
                "training": {
                    "rounds": 5,
                    "local_epochs": 5,
                    "batch_size": 16,
                    "learning_rate": 0.1,
                    "early_stopping": None,
                },
                "distribution": {"shards": 2},
            }
        )
    )
    job = sh.json("jobs", "create", "--spec", str(spec), "--dataset", dataset["id"], "--wait")
    assert isinstance(job, dict)
    assert job["status"] == "succeeded", job
    assert job["progress"] == {"round": 5, "rounds": 5}
    assert job["spec"]["dataset_id"] == dataset["id"]
    assert job["id"] in [j["id"] for j in sh.json("jobs", "list")]  # type: ignore[union-attr]
    assert "succeeded" in sh("jobs", "show", job["id"])
    # Without SHARDTRAIN_BASE_URL the server's own SHARDTRAIN_HOST/SHARDTRAIN_PORT reach
    # it, and an 80-column terminal shows the job's cells whole.
    url = httpx.URL(system.base_url)
    narrow: dict[str, str | None] = {
        **sh.env, "SHARDTRAIN_BASE_URL": None, "SHARDTRAIN_HOST": url.host,
        "SHARDTRAIN_PORT": str(url.port), "COLUMNS": "80",
    }  # fmt: skip
    listed = sh.runner.invoke(app, ["jobs", "list"], env=narrow)
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.stdout.splitlines() if line.startswith(job["id"]))
    assert all(cell in row for cell in ("succeeded", "species", "5/5")), row
    assert max(len(line) for line in listed.stdout.splitlines()) <= 80

    rounds = sh.json("jobs", "metrics", job["id"])
    assert isinstance(rounds, list) and [r["round"] for r in rounds] == [1, 2, 3, 4, 5]
    table = sh("jobs", "metrics", job["id"])
    assert "train loss" in table and "val loss" in table and "accuracy" in table
    sparkline_rows = [line for line in table.splitlines() if line.startswith("train loss ")]
    assert len(sparkline_rows) == 1
    assert sum(ch in BLOCKS for ch in sparkline_rows[0]) == 5

    events = [
        json.loads(line) for line in sh("jobs", "events", job["id"], "-o", "json").splitlines()
    ]
    assert events[0]["type"] == "job.created" and events[-1]["data"]["status"] == "succeeded"
    followed = sh("jobs", "events", job["id"], "--follow")
    assert "round.completed" in followed and "running -> succeeded" in followed

    model_id = job["model_id"]
    models = sh.json("models", "list", "--job", job["id"])
    assert [m["id"] for m in models] == [model_id]  # type: ignore[union-attr]
    assert "petal_length" in sh("models", "show", model_id)

    rows_csv = tmp_path / "rows.csv"
    with rows_csv.open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(IRIS_ROWS[0]))
        writer.writeheader()
        writer.writerows(IRIS_ROWS)
    from_csv = sh.json("models", "predict", model_id, "--input", str(rows_csv))
    rows_json = tmp_path / "rows.json"
    rows_json.write_text(json.dumps(IRIS_ROWS))
    from_json = sh.json("models", "predict", model_id, "--input", str(rows_json))
    assert isinstance(from_csv, dict) and isinstance(from_json, dict)
    assert from_csv["predictions"] == from_json["predictions"]
    assert from_csv["predictions"][0] == "setosa" and from_csv["predictions"][2] == "virginica"
    assert "p(setosa)" in sh("models", "predict", model_id, "--input", str(rows_json))

    downloaded = sh.json("models", "download", model_id, "--dest", str(tmp_path))
    assert isinstance(downloaded, dict)
    assert Path(downloaded["path"]).stat().st_size == downloaded["bytes"] > 0

    # Deploying a deployed model changes nothing (the gate override is idempotent).
    deployed = sh.json("models", "deploy", model_id)
    assert isinstance(deployed, dict)
    assert (deployed["id"], deployed["status"]) == (model_id, "deployed")

    batch = sh.json("models", "batch-predict", model_id, "--dataset", dataset["id"], "--wait")
    assert isinstance(batch, dict)
    assert (batch["status"], batch["rows"], batch["dataset_id"]) == (
        "succeeded",
        150,
        dataset["id"],
    )
    assert sh.json("batch-predictions", "show", model_id, batch["id"]) == batch
    assert "succeeded" in sh("batch-predictions", "show", model_id, batch["id"])
    sh("batch-predictions", "show", model_id, "bp_000000000000000000000000", code=4)
    written = sh.json(
        "batch-predictions", "download", model_id, batch["id"], "--dest", str(tmp_path),
        "--format", "csv",
    )  # fmt: skip
    assert isinstance(written, dict)
    assert Path(written["path"]) == tmp_path / f"{batch['id']}.csv"
    with Path(written["path"]).open(newline="") as source:
        predicted = list(csv.DictReader(source))
    assert [int(r["row_id"]) for r in predicted] == list(range(150))
    species = iris_table().column("species").to_pylist()
    assert sum(r["prediction"] == s for r, s in zip(predicted, species, strict=True)) >= 120
    parquet = sh.json(
        "batch-predictions", "download", model_id, batch["id"], "--dest", str(tmp_path)
    )
    assert isinstance(parquet, dict) and parquet["path"].endswith(".parquet")
    assert Path(parquet["path"]).read_bytes()[:4] == b"PAR1"

    rerun = sh.json("jobs", "rerun", job["id"], "--wait")
    assert isinstance(rerun, dict)
    assert rerun["id"] != job["id"] and rerun["status"] == "succeeded"
    assert rerun["spec"] == job["spec"] and rerun["model_id"] not in (None, model_id)

    # Cancelling a job that already succeeded is a conflict: exit 5.
    sh("jobs", "cancel", job["id"], code=5)
    deleted = sh.json("datasets", "delete", dataset["id"])
    assert deleted == {"id": dataset["id"], "object": "dataset", "deleted": True}


def test_exit_codes(sh: Shell, system: System, tmp_path: Path) -> None:
    sh("datasets", "show", "ds_000000000000000000000000", code=4)
    wrong_key = CliRunner().invoke(
        app, ["datasets", "list"], env=env_for(system, SHARDTRAIN_API_KEY="sk_nope")
    )
    assert wrong_key.exit_code == 3
    assert "invalid_api_key" in wrong_key.stderr
    port = free_local_port()
    sh("--base-url", f"http://127.0.0.1:{port}", "--max-retries", "0", "jobs", "list", code=9)
    sh("jobs", "create", "--spec", str(tmp_path / "missing.yaml"), code=2)

    typo = tmp_path / "typo.json"
    typo.write_text(json.dumps({"dataset_id": "ds_x", "target": "y", "trainig": {}}))
    sh("jobs", "create", "--spec", str(typo), code=6)

    bad = tmp_path / "bad.csv"
    bad.write_text("a,b,label\n1,2,0\n3,4\n")
    failed = sh.json("datasets", "upload", str(bad), "--wait", code=10)
    assert isinstance(failed, dict) and "line 3" in failed["error"]

    good = tmp_path / "seed.csv"
    good.write_text("x1,x2,label\n1,2,1\n3,4,1\n-1,-2,0\n-3,-1,0\n")
    dataset = sh.json("datasets", "upload", str(good), "--wait")
    spec = tmp_path / "long.json"
    spec.write_text(
        json.dumps(
            {"dataset_id": dataset["id"], "target": "label",  # type: ignore[index]
             "training": {"rounds": 1000, "early_stopping": None},
             "distribution": {"shards": 1},
             "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0}}
        )
    )  # fmt: skip
    job = sh.json("jobs", "create", "--spec", str(spec))
    assert isinstance(job, dict)
    assert sh.json("jobs", "cancel", job["id"])["status"] == "cancelled"  # type: ignore[index]
    ended = sh.json("jobs", "wait", job["id"], code=10)
    assert isinstance(ended, dict) and ended["status"] == "cancelled"


def test_installed_console_script(system: System) -> None:
    script = Path(sys.executable).with_name("shardtrain")
    result = subprocess.run(
        [str(script), "jobs", "list", "--output", "json", "--limit", "1"],
        env={**os.environ, **env_for(system)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert isinstance(json.loads(result.stdout), list)
    missing = subprocess.run(
        [str(script), "models", "show", "mdl_000000000000000000000000"],
        env={**os.environ, **env_for(system)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 4
    assert missing.stderr.startswith("error: 404 not_found")


def test_names_that_look_like_markup_print_as_they_are(sh: Shell, tmp_path: Path) -> None:
    data = tmp_path / "odd.csv"
    data.write_bytes(b"x,y\n1,2\n")
    name = "[/b]odd [red]name"
    dataset = sh.json("datasets", "upload", str(data), "--name", name)
    assert isinstance(dataset, dict)
    assert name in sh("datasets", "show", dataset["id"])
    assert name in sh("datasets", "list")

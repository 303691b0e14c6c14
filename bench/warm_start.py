"""Warm start against cold start, through the running system.

Starts the embedded system (`python -m app.runner --embedded-redis`: API, one worker,
beat, SQLite) and, for each learner, trains yesterday's model on yesterday's rows,
then today's data (yesterday's rows and as many new ones, from the same source) twice
with the same spec and seed: from scratch, and with `init_from` yesterday's model.
It reports, from each job's per-round validation accuracy, the rounds (trees, for
boosted trees) each needs to come within TOLERANCE of the cold start's final accuracy,
and each job's wall time: the baseline is the cold start, in the same run.

    .venv/bin/python bench/warm_start.py [--rows 100000] [--features 20]
"""

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from harness import ROOT, embedded_system, wait, write_section

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTION = "Warm start against cold start: the latest `bench/warm_start.py` run"
# "Reached": validation accuracy within this of the cold start's final one.
TOLERANCE = 0.002
DONE = {"succeeded", "failed", "cancelled"}
LEARNERS: dict[str, dict[str, Any]] = {
    "logistic_regression": {
        "model": {"type": "logistic_regression"},
        "training": {"rounds": 20, "learning_rate": 0.001, "local_epochs": 1, "batch_size": 1024},
    },
    "mlp": {
        "model": {"type": "mlp", "hidden_layers": [32]},
        "training": {"rounds": 20, "learning_rate": 0.01, "local_epochs": 1, "batch_size": 256},
    },
    "gradient_boosted_trees": {
        "model": {"type": "gradient_boosted_trees", "n_trees": 30, "max_depth": 4},
        "training": {},
    },
}


def source(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One fixed relation between features and label; `seed` draws the rows."""
    weights = np.random.default_rng(0).normal(size=features)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    logit = x @ weights / np.sqrt(features) + 0.8 * x[:, 0] * x[:, 1]
    return x, (logit + rng.logistic(scale=0.4, size=rows) > 0).astype(np.int64)


def parquet_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    table = pa.table({**{f"x{i}": x[:, i] for i in range(x.shape[1])}, "y": y})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def upload(client: httpx.Client, data: bytes) -> str:
    response = client.post("/v1/datasets", files={"file": ("rows.parquet", data)})
    response.raise_for_status()
    dataset = wait(client, f"/v1/datasets/{response.json()['id']}", {"ready", "failed"})
    assert dataset["status"] == "ready", dataset
    return str(dataset["id"])


def train(client: httpx.Client, dataset_id: str, learner: dict[str, Any], **extra: Any) -> dict:
    spec = {
        "dataset_id": dataset_id,
        "target": "y",
        "distribution": {"shards": 2},
        "training": {**learner["training"], "seed": 4, "early_stopping": None},
        "model": learner["model"],
        **extra,
    }
    if spec["model"]["type"] == "gradient_boosted_trees":
        spec["training"] = {"seed": 4, "early_stopping": None}
    started = time.perf_counter()
    created = client.post("/v1/jobs", json=spec)
    created.raise_for_status()
    job = wait(client, f"/v1/jobs/{created.json()['id']}", DONE)
    assert job["status"] == "succeeded", job
    job["seconds"] = time.perf_counter() - started
    rounds = client.get(f"/v1/jobs/{job['id']}/metrics", params={"limit": 1000}).json()["data"]
    job["accuracy_by_round"] = [r["val_metrics"].get("accuracy") for r in rounds]
    return job


def steps_to(accuracies: list[float | None], target: float, per_step: int) -> int | None:
    """The first step (round, or tree: `per_step` rounds) at or above `target`."""
    for index, value in enumerate(accuracies):
        if (index + 1) % per_step == 0 and value is not None and value >= target:
            return (index + 1) // per_step
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000, help="yesterday's rows")
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    x_old, y_old = source(args.rows, args.features, seed=1)
    x_new, y_new = source(args.rows, args.features, seed=2)
    today = parquet_bytes(np.vstack([x_old, x_new]), np.concatenate([y_old, y_new]))
    lines = [
        f"{args.rows:,} rows yesterday, {2 * args.rows:,} today ({args.features} features, "
        "the same source), 2 shards, the embedded system on this machine; reached: "
        f"validation accuracy within {TOLERANCE * 100:.1f} pp of the cold start's final.",
        "",
        "| learner | cold: steps to reach | warm: steps to reach | steps | cold final acc "
        "| warm final acc | cold s | warm s | warm / cold time |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory() as tmp, embedded_system(Path(tmp)) as (client, _):
        yesterday_id = upload(client, parquet_bytes(x_old, y_old))
        today_id = upload(client, today)
        for name, learner in LEARNERS.items():
            per_step = (
                learner["model"].get("max_depth", 1) if name == "gradient_boosted_trees" else 1
            )
            base = train(client, yesterday_id, learner)
            cold = train(client, today_id, learner)
            warm = train(client, today_id, learner, init_from={"model": base["model_id"]})
            final = cold["accuracy_by_round"][-1]
            target = final - TOLERANCE
            cold_steps = steps_to(cold["accuracy_by_round"], target, per_step)
            warm_steps = steps_to(warm["accuracy_by_round"], target, per_step)
            total = len(cold["accuracy_by_round"]) // per_step
            unit = "trees" if per_step > 1 else "rounds"
            lines.append(
                f"| {name} | {cold_steps} | {warm_steps} | {total} {unit} | {final:.4f} "
                f"| {warm['accuracy_by_round'][-1]:.4f} | {cold['seconds']:.1f} "
                f"| {warm['seconds']:.1f} | {warm['seconds'] / cold['seconds']:.2f} |"
            )
            print(lines[-1], flush=True)
    body = "\n".join(lines)
    print(body)
    write_section(Path(args.write), SECTION, body)


if __name__ == "__main__":
    main()

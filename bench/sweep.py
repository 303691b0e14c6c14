"""A sweep against exhaustive grid search, through the running system.

Starts the embedded system (`python -m app.runner --embedded-redis`: API, one worker,
beat, SQLite) on a dataset where the default settings are poor (a logistic regression
cannot draw the class boundary, and a network needs the right learning rate and
width), then, in the same run:

* the defaults: one job with the spec's defaults;
* the grid: one job per point of GRID, two at a time, as a user scripting it would;
* the sweep: `POST /v1/sweeps` over the same ranges (TPE, median pruning), with at
  most 30% of the grid's trial count.

Both are scored by the validation accuracy of the configuration they select, and
that configuration's holdout accuracy is shown beside it. Compute is what the workers
spent training: the shard seconds of every merged round of every job (and the rounds
merged, a count no machine's speed changes).

    .venv/bin/python bench/sweep.py [--rows 20000] [--trials 18]
"""

import argparse
import itertools
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from harness import ROOT, embedded_system, wait, write_section
from warm_start import parquet_bytes, upload

sys.path.insert(0, str(Path(__file__).resolve().parent))

SECTION = "Sweep against exhaustive search: the latest `bench/sweep.py` run"
DONE = {"succeeded", "failed", "cancelled"}
MODELS = [
    {"type": "logistic_regression"},
    {"type": "mlp", "hidden_layers": [8]},
    {"type": "mlp", "hidden_layers": [32]},
    {"type": "mlp", "hidden_layers": [64, 64]},
]
LEARNING_RATES = [1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
ROUNDS = [4, 8, 12]
GRID = list(itertools.product(range(len(MODELS)), LEARNING_RATES, ROUNDS))
BASE: dict[str, Any] = {
    "target": "y",
    "distribution": {"shards": 2},
    "training": {"seed": 4, "batch_size": 128, "early_stopping": None},
}


def source(rows: int, features: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved rings in the first two features, noise in the rest: no line
    separates them, so the defaults (a logistic regression) stay near chance."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(rows, features))
    radius = np.hypot(x[:, 0], x[:, 1])
    y = (np.sin(2.5 * radius) + 0.3 * rng.normal(size=rows) > 0).astype(np.int64)
    return x, y


def job_compute(client: httpx.Client, job_id: str) -> tuple[float, int]:
    """Shard seconds spent training, and rounds merged."""
    rounds = client.get(f"/v1/jobs/{job_id}/metrics").json()["data"]
    return sum(s["seconds"] for r in rounds for s in r["shards"]), len(rounds)


def holdout_accuracy(client: httpx.Client, job_id: str) -> float | None:
    job = client.get(f"/v1/jobs/{job_id}").json()
    if job["model_id"] is None:
        return None
    return client.get(f"/v1/models/{job['model_id']}").json()["metrics"].get("accuracy")


def validation_accuracy(client: httpx.Client, job: dict[str, Any]) -> float:
    rounds = client.get(f"/v1/jobs/{job['id']}/metrics").json()["data"]
    kept = job["metrics"]["round"]
    return float(next(r for r in rounds if r["round"] == kept)["val_metrics"]["accuracy"])


def run_jobs(client: httpx.Client, specs: list[dict[str, Any]], parallel: int) -> list[dict]:
    """The jobs, `parallel` at a time, each as read back once it ended."""
    pending, finished = list(specs), []
    running: list[str] = []
    while pending or running:
        while pending and len(running) < parallel:
            created = client.post("/v1/jobs", json=pending.pop(0))
            created.raise_for_status()
            running.append(created.json()["id"])
        time.sleep(0.2)
        for job_id in list(running):
            job = client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] in DONE:
                assert job["status"] == "succeeded", job
                running.remove(job_id)
                finished.append(job)
    return finished


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--features", type=int, default=8)
    # A quarter of the grid's count: the sweep leans to the costlier networks, so its
    # compute share is close to its trial share, the pruned trials offsetting them.
    parser.add_argument("--trials", type=int, default=len(GRID) // 4)
    parser.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()
    x, y = source(args.rows, args.features)
    with tempfile.TemporaryDirectory() as tmp, embedded_system(Path(tmp)) as (client, _):
        dataset_id = upload(client, parquet_bytes(x, y))
        base = {**BASE, "dataset_id": dataset_id}

        started = time.perf_counter()
        (default,) = run_jobs(client, [{"dataset_id": dataset_id, "target": "y"}], 1)
        default_s = time.perf_counter() - started

        started = time.perf_counter()
        grid_specs = [
            {**base, "model": MODELS[m],
             "training": {**base["training"], "learning_rate": lr, "rounds": rounds}}
            for m, lr, rounds in GRID
        ]  # fmt: skip
        grid = run_jobs(client, grid_specs, parallel=2)
        grid_s = time.perf_counter() - started
        grid_scores = [(validation_accuracy(client, job), job) for job in grid]
        grid_best_score, grid_best = max(grid_scores, key=lambda pair: pair[0])
        grid_compute = [job_compute(client, job["id"]) for job in grid]

        started = time.perf_counter()
        created = client.post(
            "/v1/sweeps",
            json={
                "template": {**base, "model": MODELS[1]},
                "space": {
                    "model": {"choice": MODELS},
                    "training.learning_rate": {
                        "log_uniform": [LEARNING_RATES[0], LEARNING_RATES[-1]]
                    },
                    "training.rounds": {"int": [ROUNDS[0], ROUNDS[-1]], "step": 4},
                },
                "metric": "accuracy",
                "max_trials": args.trials,
                "parallelism": 2,
                "seed": 0,
            },
        )
        created.raise_for_status()
        sweep = wait(client, f"/v1/sweeps/{created.json()['id']}", DONE)
        sweep_s = time.perf_counter() - started
        assert sweep["status"] == "succeeded", sweep
        sweep_compute = [
            job_compute(client, job_id) for t in sweep["trials"] for job_id in t["job_ids"]
        ]
        best = sweep["best_trial"]
        counts = sweep["counts"]
        grid_holdout = holdout_accuracy(client, grid_best["id"])
        sweep_holdout = client.get(f"/v1/models/{sweep['model_id']}").json()["metrics"]["accuracy"]
        default_validation = validation_accuracy(client, default)
        default_holdout = holdout_accuracy(client, default["id"])

    grid_seconds, grid_rounds = map(sum, zip(*grid_compute, strict=True))
    sweep_seconds, sweep_rounds = map(sum, zip(*sweep_compute, strict=True))
    gap_pp = (grid_best_score - best["score"]) * 100
    grid_spec = grid_best["spec"]
    lines = [
        f"{args.rows:,} rows, {args.features} features (two interleaved rings: no line "
        "separates the classes), 2 shards, the embedded system on this machine, one run. "
        f"Grid: {len(MODELS)} models x {len(LEARNING_RATES)} learning rates x "
        f"{len(ROUNDS)} round counts = {len(GRID)} jobs, two at a time. Sweep: TPE with "
        f"median pruning, {args.trials} trials, two at a time, over the same ranges "
        "(learning rate log-uniform, rounds in steps of 4). Compute: shard seconds of "
        "training in every merged round; rounds: rounds merged.",
        "",
        "| search | configurations | best validation acc | its holdout acc | rounds "
        "| compute (shard s) | compute / grid | wall s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        f"| defaults (logistic regression, lr 0.01, 10 rounds) | 1 "
        f"| {default_validation:.4f} | {default_holdout:.4f} | — | — | — | {default_s:.0f} |",
        f"| exhaustive grid | {len(GRID)} | {grid_best_score:.4f} | {grid_holdout:.4f} "
        f"| {grid_rounds} | {grid_seconds:.1f} | 1.00 | {grid_s:.0f} |",
        f"| sweep ({counts['done']} done, {counts['pruned']} pruned) | {len(sweep['trials'])} "
        f"| {best['score']:.4f} | {sweep_holdout:.4f} | {sweep_rounds} | {sweep_seconds:.1f} "
        f"| {sweep_seconds / grid_seconds:.2f} | {sweep_s:.0f} |",
        "",
        f"The sweep's best is {abs(gap_pp):.2f} pp {'behind' if gap_pp > 0 else 'ahead of'} "
        "the grid's best on validation accuracy "
        f"(target: within 0.5 pp) at {sweep_seconds / grid_seconds:.0%} of its compute "
        f"({sweep_rounds / grid_rounds:.0%} of its rounds; target: ≤ 30%). Grid best: "
        f"{grid_spec['model']}, learning rate {grid_spec['training']['learning_rate']}, "
        f"{grid_spec['training']['rounds']} rounds; sweep best: trial {best['number']}, "
        f"{best['params']}.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section(Path(args.write), SECTION, body)


if __name__ == "__main__":
    main()

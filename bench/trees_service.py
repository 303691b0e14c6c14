"""Boosted trees through the running system, against LightGBM fitted in the same run
on the same number of training rows and the same cores.

Starts the embedded system (`python -m app.runner --embedded-redis`: API, one worker,
beat, SQLite), uploads a generated nonlinear table as Parquet, trains one trees job
per shard count, and reports where a tree level's time goes, from the job's round
records and the worker's log: the slowest shard's training (scoring its rows,
routing them and building the histograms), the whole shard task (with its SQL and
Redis reads and writes), the merge task (the split search, checkpoint, validation
score and SQL) and what is left: Celery's dispatch, the chord's callback, the outbox.

    .venv/bin/python bench/trees_service.py [--rows 200000] [--features 20] [--trees 50]
"""

import argparse
import io
import math
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx
import lightgbm
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from harness import ROOT, embedded_system, wait, write_section

from app.config import Settings

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEPTH, LEARNING_RATE, BINS, L2 = 4, 0.1, 255, 1.0
# The throughput target is set on 1M rows x 50 features.
TARGET_CELLS = 50_000_000
# The embedded system runs one worker with the default concurrency.
WORKER_CONCURRENCY = int(Settings.model_fields["worker_concurrency"].default)
# Celery's own line for every task it ran: name, id and seconds.
TASK_LINE = re.compile(
    r"Task shardtrain\.(train_shard|merge_round)\[([^\]]+)\] succeeded in ([0-9.]+)s"
)
MERGED_LINE = re.compile(r"job_id=(\S+) round=(\d+) round \d+ merged")


def nonlinear(rows: int, features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    logit = x[:, 0] * x[:, 1] + np.sin(2 * x[:, 2]) + (x[:, 3] > 0.5) * x[:, 4] - 0.5 * x[:, 5]
    return x, (logit + rng.logistic(scale=0.5, size=rows) > 0).astype(np.int64)


def parquet_bytes(x: np.ndarray, y: np.ndarray) -> bytes:
    table = pa.table({**{f"x{i}": x[:, i] for i in range(x.shape[1])}, "y": y})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def service_run(client: httpx.Client, dataset_id: str, trees: int, shards: int, log: Path) -> dict:
    spec = {
        "dataset_id": dataset_id,
        "target": "y",
        "task": "classification",
        "model": {
            "type": "gradient_boosted_trees",
            "n_trees": trees,
            "max_depth": DEPTH,
            "learning_rate": LEARNING_RATE,
            "max_bins": BINS,
            "l2": L2,
        },
        "training": {"early_stopping": None},
        "distribution": {"shards": shards},
        "validation": {"holdout_fraction": 0.2, "validation_fraction": 0.1},
    }
    started = time.perf_counter()
    job = client.post("/v1/jobs", json=spec).json()
    job = wait(client, f"/v1/jobs/{job['id']}", {"succeeded", "failed"})
    wall = time.perf_counter() - started
    assert job["status"] == "succeeded", job
    rounds = client.get(f"/v1/jobs/{job['id']}/metrics").json()["data"]
    shard = np.array([r["slowest_shard_seconds"] for r in rounds])
    total = np.array([r["seconds"] for r in rounds])
    tasks = task_seconds(log, job["id"])
    # Shard tasks run `concurrency` at a time, so a level waits for this many in a row.
    waves = math.ceil(shards / min(shards, WORKER_CONCURRENCY))
    shard_task, merge_task = np.median(tasks["train_shard"]), np.median(tasks["merge_round"])
    return {
        "accuracy": job["metrics"]["accuracy"],
        "wall": wall,
        "levels": len(rounds),
        "shard_ms": 1000 * float(np.median(shard)),
        "shard_task_ms": 1000 * float(shard_task),
        "merge_ms": 1000 * float(merge_task),
        "waits_ms": 1000 * float(np.median(total) - waves * shard_task - merge_task),
        "rest_ms": 1000 * float(np.median(total - shard)),
        "level_ms": 1000 * float(np.median(total)),
    }


def task_seconds(log: Path, job_id: str) -> dict[str, list[float]]:
    """The seconds Celery reports for each of the job's shard and merge tasks: shard
    task ids carry the job id; a merge task is the job's when it sits between the
    job's first shard task and its last "round merged" line (one job runs at a time)."""
    lines = log.read_text(errors="replace").splitlines()
    mine = [i for i, line in enumerate(lines) if job_id in line]
    seconds: dict[str, list[float]] = {"train_shard": [], "merge_round": []}
    for line in lines[mine[0] : mine[-1] + 1]:
        match = TASK_LINE.search(line)
        if match and (match[1] == "merge_round" or job_id in match[2]):
            seconds[match[1]].append(float(match[3]))
    return seconds


def lightgbm_run(x: np.ndarray, y: np.ndarray, trees: int) -> dict:
    """On 70% of the rows, as many as the job trains on, scored on another 20%."""
    order = np.random.default_rng(1).permutation(len(y))
    train, test = order[: int(0.7 * len(y))], order[int(0.8 * len(y)) :]
    model = lightgbm.LGBMClassifier(
        n_estimators=trees,
        max_depth=DEPTH,
        num_leaves=2**DEPTH,
        learning_rate=LEARNING_RATE,
        max_bin=BINS,
        reg_lambda=L2,
        min_child_weight=1.0,
        min_child_samples=1,
        n_jobs=os.cpu_count(),
        verbose=-1,
    )
    started = time.perf_counter()
    model.fit(x[train], y[train])
    fit = time.perf_counter() - started
    return {"accuracy": float((model.predict(x[test]) == y[test]).mean()), "wall": fit}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--trees", type=int, default=50)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()

    x, y = nonlinear(args.rows, args.features)
    baseline = lightgbm_run(x, y, args.trees)
    results = {}
    workdir = Path(tempfile.mkdtemp(prefix="shardtrain-trees-"))
    with embedded_system(workdir) as (client, _runner):
        log = workdir / "system.log"
        upload = client.post("/v1/datasets", files={"file": ("t.parquet", parquet_bytes(x, y))})
        dataset = wait(client, f"/v1/datasets/{upload.json()['id']}", {"ready", "failed"})
        assert dataset["status"] == "ready", dataset
        for shards in args.shards:
            results[shards] = service_run(client, dataset["id"], args.trees, shards, log)

    name = f"nonlinear {args.rows // 1000}k x {args.features}"
    lines = [
        f"{args.trees} trees of depth {DEPTH}, learning rate {LEARNING_RATE}, {BINS} bins, "
        f"l2 {L2}, on {name}. Machine: {os.cpu_count()} cores, shared by the API, the "
        "worker, beat and this client; LightGBM uses all of them.",
        "",
        "| fit | accuracy | wall s | time / LightGBM | levels | per level | slowest shard's "
        "training | shard task | merge task | dispatch and waits |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| LightGBM | {baseline['accuracy']:.4f} | {baseline['wall']:.2f} | 1.0 | — | — | — "
        "| — | — | — |",
    ]
    for shards, r in results.items():
        lines.append(
            f"| shardtrain, {shards} shard(s) | {r['accuracy']:.4f} | {r['wall']:.2f} | "
            f"{r['wall'] / baseline['wall']:.1f} | {r['levels']} | {r['level_ms']:.0f} ms | "
            f"{r['shard_ms']:.0f} ms | {r['shard_task_ms']:.0f} ms | {r['merge_ms']:.0f} ms | "
            f"{r['waits_ms']:.0f} ms |"
        )
    worst = max(r["wall"] / baseline["wall"] for r in results.values())
    lines += [
        "",
        (
            f"Target on the 1M x 50 set: training throughput >= 0.2x LightGBM's (time <= 5x): "
            f"{'met' if worst <= 5 else 'NOT met'} (worst {worst:.1f}x)."
            if args.rows * args.features >= TARGET_CELLS
            else f"For reference: {worst:.1f}x LightGBM's time at worst. The target is set on "
            "the 1M x 50 set; on a smaller one a level's fixed cost weighs more."
        )
        + " Per-level figures are "
        "medians over the job's rounds: the level from the round record's `seconds` (dispatch "
        "to the end of the merge), the slowest shard's training (`slowest_shard_seconds`: "
        "scoring, routing and histograms), the shard and merge tasks as Celery timed them "
        "(the shard task adds its SQL reads and the Redis reads and writes), and what is "
        "left of the level once the shard tasks (in waves of the worker's concurrency) and "
        "the merge are taken out: Celery's dispatch, the chord's callback, the outbox.",
    ]
    report = "\n".join(lines)
    print(report)
    heading = f"Boosted trees through the service (`bench/trees_service.py`), {name}"
    write_section(Path(args.write), heading, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

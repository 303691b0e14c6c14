"""End to end against a local scikit-learn fit, interleaved in one run (issue 18).

Generates (or takes) a binary CSV, by default 1M rows x 50 float features split into
an 800k-row training file and a 200k-row test file, then runs, alternately, `--repeats`
times each:
- scikit-learn: pandas `read_csv` of both files, `LogisticRegression(lbfgs)`, predict;
- Shardtrain as `make run` starts it (`python -m app.runner --embedded-redis`: SQLite,
  its own Redis, one worker, uvicorn): upload the training file, wait for `ready`,
  post a logistic-regression job (2 shards, 3 rounds of 1 epoch, batch 4096, every
  row for training), wait for `succeeded`, then predict the test file (upload, ingest,
  batch prediction, download).

Each Shardtrain stage is set beside its floor, measured in every repeat between the
two: a local copy of the file (upload), pyarrow `read_csv` plus a Parquet write
(ingest), reading the Parquet file and writing standardized `.npy` shards
(sharding), bare torch epochs over the same rows (training), reading the test file
with pyarrow and a forward pass over its rows (predict). Prints medians, the
accuracy of both, the sum of the floors, and the peak RSS of every Shardtrain
process, and writes the table to its own section of docs/benchmarks.md.

    .venv/bin/python bench/e2e.py                  # 1M x 50, 3 repeats (~6 min here)
    .venv/bin/python bench/e2e.py --rows 200000 --repeats 1
    .venv/bin/python bench/e2e.py --train my.csv --test my_test.csv --target label
"""

import argparse
import contextlib
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from harness import ROOT, PeakRss, embedded_system, system_processes, write_section

MB = 1024 * 1024
# The run's own section of docs/benchmarks.md; the prose about it is in another.
RESULTS_SECTION = "End to end against scikit-learn: the latest `bench/e2e.py` run"
TARGET_RATIO = 1.3
STAGE_FLOOR_RATIO = 2.0
WORKER_RSS_AFTER_MB = 500
SPEC = {
    "model": {"type": "logistic_regression"},
    "training": {"rounds": 3, "local_epochs": 1, "batch_size": 4096, "early_stopping": None},
    "distribution": {"shards": 2},
    "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
}


def generate(train: Path, test: Path, rows: int, features: int, test_rows: int) -> None:
    rng = np.random.default_rng(0)
    weights = rng.normal(size=features)
    for path, n in ((train, rows - test_rows), (test, test_rows)):
        with pacsv.CSVWriter(path, _schema(features)) as writer:
            for start in range(0, n, 100_000):
                size = min(100_000, n - start)
                # Five decimals, as a file exported from a spreadsheet or a database has
                # (about 9 characters a value), not the 17 digits of a float64's repr.
                x = np.round(rng.normal(size=(size, features)), 5)
                logit = x @ weights / np.sqrt(features) * 2 + rng.normal(size=size)
                columns = {f"x{i}": x[:, i] for i in range(features)}
                columns["label"] = (logit > 0).astype(np.int64)
                writer.write_table(pa.table(columns, schema=_schema(features)))


def _schema(features: int) -> pa.Schema:
    return pa.schema(
        [pa.field(f"x{i}", pa.float64()) for i in range(features)] + [pa.field("label", pa.int64())]
    )


@dataclass
class Stages:
    seconds: dict[str, float] = field(default_factory=dict)
    accuracy: float = 0.0

    @contextlib.contextmanager
    def timed(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started

    @property
    def total(self) -> float:
        """Every stage, counting only the faster of the ways to predict."""
        predict = [v for k, v in self.seconds.items() if k.startswith("predict")]
        rest = sum(v for k, v in self.seconds.items() if not k.startswith("predict"))
        return rest + (min(predict) if predict else 0.0)


def run_sklearn(train: Path, test: Path, target: str) -> Stages:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    stages = Stages()
    with stages.timed("load"):
        frame = pd.read_csv(train)
        test_frame = pd.read_csv(test)
    y = frame.pop(target).to_numpy()
    y_test = test_frame.pop(target).to_numpy()
    with stages.timed("fit"):
        model = LogisticRegression(solver="lbfgs", max_iter=200).fit(frame.to_numpy(), y)
    with stages.timed("predict"):
        predicted = model.predict(test_frame.to_numpy())
    stages.accuracy = float(np.mean(predicted == y_test))
    return stages


def _wait(client: httpx.Client, path: str, done: set[str], timeout: float = 1800) -> dict:
    deadline = time.monotonic() + timeout
    while (body := client.get(path).json())["status"] not in done:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} stuck at {body['status']}")
        time.sleep(0.05)
    return dict(body)


def _upload(client: httpx.Client, path: Path) -> str:
    boundary = "shardtrain-e2e-bench"

    def body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            f'filename="{path.name}"\r\nContent-Type: text/csv\r\n\r\n'
        ).encode()
        with path.open("rb") as handle:
            while chunk := handle.read(4 * MB):
                yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/datasets",
        content=body(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    response.raise_for_status()
    return str(response.json()["id"])


ARROW_STREAM = "application/vnd.apache.arrow.stream"
PREDICT_ROWS = 10_000  # SHARDTRAIN_MAX_PREDICT_ROWS' default


def predict_arrow(client: httpx.Client, model_id: str, test: Path, target: str) -> list[object]:
    """The test file read here, its rows sent as Arrow IPC streams of the request
    limit, the answers read as Arrow: online predict, no upload, no ingest."""
    table = pacsv.read_csv(test)
    table = table.drop_columns([target])
    predicted: list[object] = []
    for start in range(0, table.num_rows, PREDICT_ROWS):
        sink = pa.BufferOutputStream()
        part = table.slice(start, PREDICT_ROWS)
        with pa.ipc.new_stream(sink, part.schema) as writer:
            writer.write_table(part)
        answer = client.post(
            f"/v1/models/{model_id}/predict",
            content=sink.getvalue().to_pybytes(),
            headers={"content-type": ARROW_STREAM, "accept": ARROW_STREAM},
        )
        answer.raise_for_status()
        result = pa.ipc.open_stream(answer.content).read_all()
        predicted += result.column("prediction").to_pylist()
    return predicted


def run_shardtrain(client: httpx.Client, train: Path, test: Path, target: str) -> Stages:
    stages = Stages()
    with stages.timed("upload"):
        dataset_id = _upload(client, train)
    with stages.timed("ingest"):
        dataset = _wait(client, f"/v1/datasets/{dataset_id}", {"ready", "failed"})
    if dataset["status"] != "ready":
        raise RuntimeError(f"ingest failed: {dataset['error']}")
    with stages.timed("sharding"):
        created = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": target, **SPEC})
        created.raise_for_status()
        job_path = f"/v1/jobs/{created.json()['id']}"
        _wait(client, job_path, {"running", "succeeded", "failed"})
    with stages.timed("training"):
        job = _wait(client, job_path, {"succeeded", "failed"})
    if job["status"] != "succeeded":
        raise RuntimeError(f"job failed: {job['error']}")
    with stages.timed("predict (online Arrow)"):
        online = predict_arrow(client, job["model_id"], test, target)
    with stages.timed("predict (batch)"):
        test_id = _upload(client, test)
        test_dataset = _wait(client, f"/v1/datasets/{test_id}", {"ready", "failed"})
        if test_dataset["status"] != "ready":
            raise RuntimeError(f"test ingest failed: {test_dataset['error']}")
        batch = client.post(
            f"/v1/models/{job['model_id']}/batch_predictions", json={"dataset_id": test_id}
        )
        batch.raise_for_status()
        batch_path = f"/v1/models/{job['model_id']}/batch_predictions/{batch.json()['id']}"
        done = _wait(client, batch_path, {"succeeded", "failed"})
        if done["status"] != "succeeded":
            raise RuntimeError(f"batch prediction failed: {done['error']}")
        output = client.get(f"{batch_path}/output")
        output.raise_for_status()
    predicted = pq.read_table(io.BytesIO(output.content)).column("prediction").to_pylist()
    labels = pacsv.read_csv(test).column(target).to_pylist()
    hits = [str(p) == str(t) for p, t in zip(predicted, labels, strict=True)]
    stages.accuracy = float(np.mean(hits))
    assert [str(p) for p in online] == [str(p) for p in predicted], "online != batch"
    for path in (job_path, f"/v1/datasets/{dataset_id}", f"/v1/datasets/{test_id}"):
        client.delete(path)
    client.delete(f"/v1/models/{job['model_id']}")
    return stages


def floors(train: Path, test: Path, target: str, workdir: Path) -> dict[str, float]:
    """What each stage cannot beat on this machine, measured now."""
    import torch

    out: dict[str, float] = {}
    started = time.perf_counter()
    shutil.copyfile(train, workdir / "copy.csv")
    out["upload"] = time.perf_counter() - started
    (workdir / "copy.csv").unlink()

    started = time.perf_counter()
    table = pacsv.read_csv(train)
    pq.write_table(table, workdir / "floor.parquet", use_dictionary=False)
    out["ingest"] = time.perf_counter() - started

    started = time.perf_counter()
    read = pq.read_table(workdir / "floor.parquet")
    names = [n for n in read.column_names if n != target]
    y = read.column(target).to_numpy()
    x = np.empty((read.num_rows, len(names)), dtype=np.float32)
    for i, name in enumerate(names):
        x[:, i] = read.column(name).to_numpy()
    x -= x.mean(axis=0)
    x /= x.std(axis=0)
    half = len(x) // 2
    np.save(workdir / "a.npy", x[:half])
    np.save(workdir / "b.npy", x[half:])
    out["sharding"] = time.perf_counter() - started
    (workdir / "floor.parquet").unlink()

    torch.manual_seed(0)
    features, labels = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    model = torch.nn.Linear(x.shape[1], 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    started = time.perf_counter()
    for _ in range(SPEC["training"]["rounds"]):  # type: ignore[index]
        for start in range(0, len(features), 4096):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(
                model(features[start : start + 4096]), labels[start : start + 4096]
            )
            loss.backward()
            optimizer.step()
    out["training"] = time.perf_counter() - started

    # Predicting a file means reading it: both Shardtrain paths and scikit-learn do.
    started = time.perf_counter()
    test_table = pacsv.read_csv(test)
    test_x = torch.from_numpy(
        np.column_stack(
            [test_table.column(n).to_numpy() for n in test_table.column_names if n != target]
        ).astype(np.float32)
    )
    forward = time.perf_counter()
    with torch.no_grad():
        model(test_x).argmax(dim=1)
    out["forward pass"] = time.perf_counter() - forward
    out["predict"] = time.perf_counter() - started
    return out


def median_floors(runs: list[dict[str, float]]) -> dict[str, float]:
    return {name: statistics.median(r[name] for r in runs) for name in runs[0]}


def median_stages(runs: list[Stages]) -> Stages:
    names = list(runs[0].seconds)
    return Stages(
        seconds={n: statistics.median(r.seconds[n] for r in runs) for n in names},
        accuracy=statistics.median(r.accuracy for r in runs),
    )


def report(
    ours: Stages,
    sklearn: Stages,
    floor: dict[str, float],
    rss: dict[str, float],
    after_mb: dict[str, float],
    describe: str,
    repeats: int,
) -> str:
    ratio = ours.total / sklearn.total
    gap_pp = abs(ours.accuracy - sklearn.accuracy) * 100
    lines = [
        describe,
        "",
        f"Median of {repeats} interleaved runs. Shardtrain end to end: upload the training "
        "file, ingest, job (sharding, then training), predictions for the test file, by "
        "the faster of two ways: online predict with the rows as Arrow IPC streams of "
        "10,000, or a batch prediction (upload, ingest, batch, download). Both give the "
        "same predictions (checked).",
        "",
        "| stage | Shardtrain s | floor s | ratio to floor | within 2x |",
        "|---|---:|---:|---:|---|",
    ]
    for name, seconds in ours.seconds.items():
        base = floor.get(name.split(" (")[0])
        if base:
            within = "yes" if seconds <= STAGE_FLOOR_RATIO * base else "no"
            lines.append(
                f"| {name} | {seconds:.2f} | {base:.2f} | {seconds / base:.1f}x | {within} |"
            )
        else:
            lines.append(f"| {name} | {seconds:.2f} | — | — | — |")
    # Each stage at the faster of its floor and Shardtrain's own (which beats the
    # single-threaded floor code for ingest and sharding): serial stages' best case.
    best = {
        stage: min([floor[stage], *(v for n, v in ours.seconds.items() if n.startswith(stage))])
        for stage in ("upload", "ingest", "sharding", "training", "predict")
    }
    serial = sum(best.values())
    lines += [
        "",
        f"The predict floor is reading the test file with pyarrow and a forward pass; the "
        f"forward pass alone takes {floor['forward pass']:.2f} s. Each stage at the faster "
        f"of its floor and Shardtrain's own time adds up to {serial:.2f} s, "
        f"{serial / sklearn.total:.2f}x scikit-learn's total: stages that run one after "
        "another get no nearer than that.",
        "",
        "| system | " + " | ".join(sklearn.seconds) + " | total s | accuracy |",
        "|---|" + "---:|" * len(sklearn.seconds) + "---:|---:|",
        "| scikit-learn | "
        + " | ".join(f"{v:.2f}" for v in sklearn.seconds.values())
        + f" | {sklearn.total:.2f} | {sklearn.accuracy:.4f} |",
        f"| Shardtrain | — | — | — | {ours.total:.2f} | {ours.accuracy:.4f} |",
        "",
        f"Shardtrain / scikit-learn: **{ratio:.2f}x** (target <= {TARGET_RATIO}x: "
        f"{'met' if ratio <= TARGET_RATIO else 'NOT met'}); accuracy gap {gap_pp:.2f} pp "
        f"(target <= 0.1 pp: {'met' if gap_pp <= 0.1 else 'NOT met'}).",
        "",
        "| process | peak RSS MB | RSS after the last job MB |",
        "|---|---:|---:|",
    ]
    lines += [f"| {n} | {rss[n]:,.0f} | {after_mb.get(n, 0):,.0f} |" for n in rss]
    worst_after = max((v for n, v in after_mb.items() if n.startswith("worker")), default=0.0)
    lines += [
        "",
        f"Largest worker RSS after a job: {worst_after:,.0f} MB (target < "
        f"{WORKER_RSS_AFTER_MB} MB: {'met' if worst_after < WORKER_RSS_AFTER_MB else 'NOT met'}).",
    ]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="training + test rows")
    parser.add_argument("--features", type=int, default=50)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--train", type=Path, help="a training CSV instead of generating one")
    parser.add_argument("--test", type=Path, help="its test CSV")
    parser.add_argument("--target", default="label")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="shardtrain-e2e-"))
    try:
        if args.train:
            train, test = args.train, args.test
        else:
            train, test = workdir / "train.csv", workdir / "test.csv"
            test_rows = int(args.rows * args.test_fraction)
            print(f"generating {args.rows:,} rows x {args.features} ...", flush=True)
            generate(train, test, args.rows, args.features, test_rows)
        size_mb = train.stat().st_size / MB
        describe = (
            f"Training file: {size_mb:,.0f} MB of CSV; test file "
            f"{test.stat().st_size / MB:,.0f} MB. Machine: {os.cpu_count()} cores."
        )
        print(describe, flush=True)
        floor_runs: list[dict[str, float]] = []
        ours_runs: list[Stages] = []
        sklearn_runs: list[Stages] = []
        with embedded_system(workdir) as (client, runner):
            time.sleep(3)  # the worker's pool processes finish starting
            processes = system_processes(psutil.Process(runner.pid))
            with PeakRss(processes) as peaks:
                for repeat in range(args.repeats):
                    # Interleaved as well: this machine's speed drifts from run to run.
                    floor_runs.append(floors(train, test, args.target, workdir))
                    sklearn_runs.append(run_sklearn(train, test, args.target))
                    ours_runs.append(run_shardtrain(client, train, test, args.target))
                    print(
                        f"run {repeat + 1}: scikit-learn {sklearn_runs[-1].total:.2f} s, "
                        f"Shardtrain {ours_runs[-1].total:.2f} s, floors "
                        f"{ {k: round(v, 2) for k, v in floor_runs[-1].items()} } "
                        f"{ {k: round(v, 2) for k, v in ours_runs[-1].seconds.items()} }",
                        flush=True,
                    )
            time.sleep(2)
            after = {n: p.memory_info().rss / MB for n, p in processes.items()}
        text = report(
            median_stages(ours_runs),
            median_stages(sklearn_runs),
            median_floors(floor_runs),
            {n: v / MB for n, v in peaks.peak.items()},
            after,
            describe,
            args.repeats,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(text)
    write_section(Path(args.write), RESULTS_SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

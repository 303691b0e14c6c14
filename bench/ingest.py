"""Ingest at scale through the running system, against baselines measured in the same run.

Generates a CSV of about 2 GB (numeric and string columns), starts the embedded system
(`python -m app.runner --embedded-redis`: SQLite, its own Redis, one worker, uvicorn),
uploads the file through the API, waits for `ready`, then shards it through a job.

Prints, and writes to docs/benchmarks.md:
- upload MB/s against a plain local copy of the same file;
- ingest MB/s against `pyarrow.csv.read_csv` of the same file;
- the peak RSS growth of the API process and of every worker process during upload,
  ingest and sharding. Targets: ingest >= 0.5x pyarrow; RSS growth < 300 MB everywhere.

    .venv/bin/python bench/ingest.py            # about 2 GB
    .venv/bin/python bench/ingest.py --size-mb 200
"""

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
from harness import ROOT, embedded_system, write_section

MB = 1024 * 1024
RSS_TARGET_MB = 300
INGEST_TARGET = 0.5


def generate_csv(path: Path, size_mb: int) -> None:
    rng = np.random.default_rng(0)
    cities = np.array(["lima", "oslo", "rome", "kyiv", "lagos", "quito", "perth"])
    tiers = np.array(["bronze", "silver", "gold"])
    with pacsv.CSVWriter(path, _schema()) as writer:
        while path.stat().st_size < size_mb * MB:
            n = 200_000
            x = rng.normal(size=(n, 6))
            logit = x[:, 0] - 0.5 * x[:, 1] + 0.25 * x[:, 2]
            writer.write_table(
                pa.table(
                    {
                        **{f"f{i}": x[:, i] for i in range(6)},
                        "count": rng.integers(0, 1000, size=n),
                        "age": rng.integers(18, 90, size=n),
                        "city": cities[rng.integers(0, len(cities), size=n)],
                        "tier": tiers[rng.integers(0, len(tiers), size=n)],
                        "label": np.where(logit > 0, "yes", "no"),
                    },
                    schema=_schema(),
                )
            )


def _schema() -> pa.Schema:
    fields = [pa.field(f"f{i}", pa.float64()) for i in range(6)]
    fields += [pa.field("count", pa.int64()), pa.field("age", pa.int64())]
    fields += [pa.field(n, pa.string()) for n in ("city", "tier", "label")]
    return pa.schema(fields)


class PeakRss:
    """Samples the RSS of the system's processes every 20 ms during a phase."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.baseline = {name: p.memory_info().rss for name, p in processes.items()}
        self.peak = dict(self.baseline)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def growth_mb(self) -> dict[str, float]:
        return {name: (self.peak[name] - self.baseline[name]) / MB for name in self.processes}


def multipart(path: Path, boundary: str) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def system_processes(runner: psutil.Process) -> dict[str, psutil.Process]:
    found: dict[str, psutil.Process] = {}
    for child in runner.children(recursive=True):
        command = " ".join(child.cmdline())
        if "uvicorn" in command:
            found["api"] = child
        elif "celery" in command:
            role = "worker (parent)" if child.ppid() == runner.pid else f"worker pool {child.pid}"
            found[role] = child
    return found


def wait_for(client: httpx.Client, path: str, statuses: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (body := client.get(path).json())["status"] not in statuses:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} stuck at {body['status']}")
        time.sleep(0.1)
    return body


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument("--write", default=str(ROOT / "docs" / "benchmarks.md"))
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="shardtrain-bench-"))
    source = workdir / "big.csv"
    print(f"generating about {args.size_mb} MB of CSV in {source} ...", flush=True)
    generate_csv(source, args.size_mb)
    size_mb = source.stat().st_size / MB

    started = time.perf_counter()
    shutil.copyfile(source, workdir / "copy.csv")
    copy_s = time.perf_counter() - started
    (workdir / "copy.csv").unlink()

    started = time.perf_counter()
    table = pacsv.read_csv(source)
    pyarrow_s = time.perf_counter() - started
    rows = table.num_rows
    del table

    try:
        with embedded_system(workdir) as (client, runner):
            time.sleep(3)  # let the worker's pool processes finish starting
            processes = system_processes(psutil.Process(runner.pid))

            boundary = "shardtrain-bench"
            with PeakRss(processes) as upload_rss:
                started = time.perf_counter()
                response = client.post(
                    "/v1/datasets",
                    content=multipart(source, boundary),
                    headers={"content-type": f"multipart/form-data; boundary={boundary}"},
                )
                upload_s = time.perf_counter() - started
            response.raise_for_status()
            dataset_id = response.json()["id"]

            with PeakRss(processes) as ingest_rss:
                started = time.perf_counter()
                dataset = wait_for(client, f"/v1/datasets/{dataset_id}", {"ready", "failed"}, 3600)
                ingest_s = time.perf_counter() - started
            if dataset["status"] != "ready":
                raise RuntimeError(f"ingest failed: {dataset['error']}")
            assert dataset["rows"] == rows, (dataset["rows"], rows)

            spec = {
                "dataset_id": dataset_id,
                "target": "label",
                "training": {"rounds": 1},
                "distribution": {"shards": 4},
            }
            with PeakRss(processes) as shard_rss:
                started = time.perf_counter()
                job = client.post("/v1/jobs", json=spec).json()
                job = wait_for(
                    client, f"/v1/jobs/{job['id']}", {"running", "succeeded", "failed"}, 3600
                )
                shard_s = time.perf_counter() - started
            if job["status"] == "failed":
                raise RuntimeError(f"sharding failed: {job['error']}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ingest_ratio = (size_mb / ingest_s) / (size_mb / pyarrow_s)
    lines = [
        f"File: {size_mb:,.0f} MB of CSV, {rows:,} rows, 11 columns "
        f"(6 float, 2 int, 3 string). Machine: {os.cpu_count()} cores.",
        "",
        "| step | ours | baseline | ratio | target |",
        "|---|---|---|---|---|",
        f"| upload through the API | {size_mb / upload_s:,.0f} MB/s | local file copy "
        f"{size_mb / copy_s:,.0f} MB/s | {copy_s / upload_s:.2f}x | — |",
        f"| ingest to Parquet (worker) | {size_mb / ingest_s:,.0f} MB/s | pyarrow.csv.read_csv "
        f"{size_mb / pyarrow_s:,.0f} MB/s | {ingest_ratio:.2f}x | >= {INGEST_TARGET}x "
        f"{'met' if ingest_ratio >= INGEST_TARGET else 'NOT met'} |",
        f"| sharding (job to `running`) | {shard_s:,.1f} s, {rows / shard_s:,.0f} rows/s | — "
        "| — | — |",
        "",
        "Peak RSS growth over each phase's start (MB):",
        "",
        "| process | upload | ingest | sharding |",
        "|---|---|---|---|",
    ]
    worst = 0.0
    for name in processes:
        phases = [p.growth_mb()[name] for p in (upload_rss, ingest_rss, shard_rss)]
        worst = max(worst, *phases)
        lines.append(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in phases) + " |")
    verdict = "met" if worst < RSS_TARGET_MB else "NOT met"
    lines += ["", f"Largest growth: {worst:,.0f} MB (target < {RSS_TARGET_MB} MB: {verdict})."]
    report = "\n".join(lines)
    print(report)
    write_section(Path(args.write), "Ingest at scale (`bench/ingest.py`)", report)
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
    .venv/bin/python bench/ingest.py --storage s3   # local, then S3, in one run

With `--storage s3` the same file also goes through a system whose blobs are in S3:
moto's S3 server in a process of its own on a local port (no MinIO binary installs
here), and the report sets each step's throughput on S3 beside local storage's.
"""

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import psutil
import pyarrow as pa
import pyarrow.csv as pacsv
from harness import ROOT, PeakRss, embedded_system, system_processes, write_section

from app.runner import free_local_port

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


def multipart(path: Path, boundary: str) -> Iterator[bytes]:
    yield (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: text/csv\r\n\r\n'
    ).encode()
    with path.open("rb") as handle:
        while chunk := handle.read(MB):
            yield chunk
    yield f"\r\n--{boundary}--\r\n".encode()


def wait_for(client: httpx.Client, path: str, statuses: set[str], timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while (body := client.get(path).json())["status"] not in statuses:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} stuck at {body['status']}")
        time.sleep(0.1)
    return body


@dataclass
class Measured:
    upload_s: float
    ingest_s: float
    shard_s: float
    # Peak RSS growth (MB) per process in each phase: upload, ingest, sharding.
    rss: dict[str, list[float]]


def measure(workdir: Path, source: Path, rows: int, extra_env: dict[str, str]) -> Measured:
    """Upload, ingest and shard `source` through a fresh embedded system."""
    workdir.mkdir(parents=True, exist_ok=True)
    with embedded_system(workdir, extra_env) as (client, runner):
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
    phases = (upload_rss, ingest_rss, shard_rss)
    rss = {name: [p.growth_mb()[name] for p in phases] for name in processes}
    return Measured(upload_s, ingest_s, shard_s, rss)


@contextlib.contextmanager
def s3_server(workdir: Path) -> Iterator[tuple[dict[str, str], Any]]:
    """moto's S3 server in its own process, with a bucket: the system's settings for
    it, and a boto3 client."""
    import boto3

    port = free_local_port()
    log = (workdir / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    env = {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_REGION": "us-east-1",
    }
    try:
        client = boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            region_name="us-east-1",
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                client.create_bucket(Bucket="bench")
                break
            except Exception:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.2)
        yield {**env, "SHARDTRAIN_STORAGE_URL": "s3://bench/blobs"}, client
    finally:
        server.terminate()
        server.wait(timeout=30)


def rss_table(measured: Measured) -> list[str]:
    lines = ["| process | upload | ingest | sharding |", "|---|---|---|---|"]
    for name, phases in measured.rss.items():
        lines.append(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in phases) + " |")
    return lines


def worst_rss(measured: Measured) -> float:
    return max(v for phases in measured.rss.values() for v in phases)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=2048)
    parser.add_argument(
        "--storage",
        choices=("local", "s3"),
        default="local",
        help="s3: measure local storage, then S3 (moto's server), in this one run",
    )
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

    s3: Measured | None = None
    try:
        local = measure(workdir / "local", source, rows, {})
        if args.storage == "s3":
            with s3_server(workdir) as (env, client):
                # The server's own speed, the floor for any client of it: boto3's managed
                # transfers (concurrent parts) of the same file, up and down.
                started = time.perf_counter()
                client.upload_file(str(source), "bench", "floor.csv")
                put_s = time.perf_counter() - started
                started = time.perf_counter()
                client.download_file("bench", "floor.csv", str(workdir / "floor.csv"))
                get_s = time.perf_counter() - started
                client.delete_object(Bucket="bench", Key="floor.csv")
                (workdir / "floor.csv").unlink()
                s3 = measure(workdir / "s3", source, rows, env)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    ingest_ratio = (size_mb / local.ingest_s) / (size_mb / pyarrow_s)
    lines = [
        f"File: {size_mb:,.0f} MB of CSV, {rows:,} rows, 11 columns "
        f"(6 float, 2 int, 3 string). Machine: {os.cpu_count()} cores.",
        "",
        "| step | ours | baseline | ratio | target |",
        "|---|---|---|---|---|",
        f"| upload through the API | {size_mb / local.upload_s:,.0f} MB/s | local file copy "
        f"{size_mb / copy_s:,.0f} MB/s | {copy_s / local.upload_s:.2f}x | — |",
        f"| ingest to Parquet (worker) | {size_mb / local.ingest_s:,.0f} MB/s | "
        f"pyarrow.csv.read_csv {size_mb / pyarrow_s:,.0f} MB/s | {ingest_ratio:.2f}x | "
        f">= {INGEST_TARGET}x {'met' if ingest_ratio >= INGEST_TARGET else 'NOT met'} |",
        f"| sharding (job to `running`) | {local.shard_s:,.1f} s, "
        f"{rows / local.shard_s:,.0f} rows/s | — | — | — |",
        "",
        "Peak RSS growth over each phase's start (MB):",
        "",
        *rss_table(local),
    ]
    worst = worst_rss(local)
    verdict = "met" if worst < RSS_TARGET_MB else "NOT met"
    lines += ["", f"Largest growth: {worst:,.0f} MB (target < {RSS_TARGET_MB} MB: {verdict})."]
    report = "\n".join(lines)
    print(report)
    if s3 is None:
        write_section(Path(args.write), "Ingest at scale (`bench/ingest.py`)", report)
        return 0
    compared = [
        f"The same {size_mb:,.0f} MB file, {rows:,} rows, through two fresh systems in "
        "one run: blobs in the local data directory, then in S3 (moto's S3 server, a "
        "Python process on a local port, standing in for MinIO or AWS).",
        "",
        "| step | local | S3 | S3 / local throughput |",
        "|---|---|---|---|",
        f"| upload through the API | {size_mb / local.upload_s:,.0f} MB/s | "
        f"{size_mb / s3.upload_s:,.0f} MB/s | {local.upload_s / s3.upload_s:.2f}x |",
        f"| ingest to Parquet (worker) | {size_mb / local.ingest_s:,.0f} MB/s | "
        f"{size_mb / s3.ingest_s:,.0f} MB/s | {local.ingest_s / s3.ingest_s:.2f}x |",
        f"| sharding (job to `running`) | {rows / local.shard_s:,.0f} rows/s | "
        f"{rows / s3.shard_s:,.0f} rows/s | {local.shard_s / s3.shard_s:.2f}x |",
        "",
        f"The S3 server's own speed in the same run, boto3's managed transfer of the file: "
        f"put {size_mb / put_s:,.0f} MB/s, get {size_mb / get_s:,.0f} MB/s. The upload "
        f"through the API reaches {put_s / s3.upload_s:.2f}x of that put.",
        "",
        "Peak RSS growth with S3 storage (MB):",
        "",
        *rss_table(s3),
        "",
        f"Largest growth with S3: {worst_rss(s3):,.0f} MB (target < {RSS_TARGET_MB} MB: "
        f"{'met' if worst_rss(s3) < RSS_TARGET_MB else 'NOT met'}).",
    ]
    s3_report = "\n".join(compared)
    print()
    print(s3_report)
    write_section(Path(args.write), "Ingest at scale (`bench/ingest.py`)", report)
    write_section(
        Path(args.write), "Ingest with S3 storage (`bench/ingest.py --storage s3`)", s3_report
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Workers killed during an ingest, as the out-of-memory killer kills them: the ingest is
delivered a bounded number of times, the dataset then fails naming the lost worker,
and no half-written file is left on disk. A worker that starts again sweeps what
killed processes left before it."""

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest
from e2e_system import System, running_system, stop, wait_until_ready
from own_redis import OwnRedis

from app.config import Settings
from app.storage.temp_files import TEMP_PREFIX, this_machine

# INGEST_MAX_DELIVERIES's default: the delivery after the third lost one fails the dataset.
MAX_DELIVERIES = Settings.model_fields["ingest_max_deliveries"].default


def big_csv() -> bytes:
    """About 64 MB of CSV: its ingest takes seconds, long enough to be killed mid-way."""
    rng = np.random.default_rng(0)
    rows = 400_000
    columns = {f"x{i}": rng.normal(size=rows) for i in range(8)}
    table = pa.table({**columns, "label": rng.choice(["a", "b", "c"], size=rows)})
    out = io.BytesIO()
    pacsv.write_csv(table, out)
    return out.getvalue()


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(f"{TEMP_PREFIX}*")) if folder.is_dir() else []


def writer_pid(temp: Path) -> int:
    return int(temp.name.split("~")[-2])


def wait_for_new_writer(folder: Path, killed: set[int], timeout: float = 120.0) -> Path:
    """The temporary Parquet file of the delivery now running, once it has begun."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for temp in temp_files(folder):
            if temp.name.startswith(f"{TEMP_PREFIX}data.parquet~"):
                try:
                    if writer_pid(temp) not in killed:
                        return temp
                except ValueError:
                    continue
        time.sleep(0.02)
    raise AssertionError(f"no new ingest began in {folder}: {temp_files(folder)}")


def test_an_ingest_whose_worker_is_killed_each_time_fails_after_its_deliveries(
    system: System,
) -> None:
    created = system.client.post("/v1/datasets", files={"file": ("big.csv", big_csv())})
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    folder = system.data_dir / "blobs" / "datasets" / dataset_id
    killed: set[int] = set()
    for _ in range(MAX_DELIVERIES):
        temp = wait_for_new_writer(folder, killed)
        pid = writer_pid(temp)
        # The pool process writing the file, as the OOM killer picks the biggest one.
        os.kill(pid, signal.SIGKILL)
        killed.add(pid)
        # Each delivery removed its killed predecessors' files before writing its own.
        left = [t for t in temp_files(folder) if t != temp]
        assert all(writer_pid(t) not in killed for t in left), left
    last_kill = time.monotonic()
    dataset = system.wait_for(f"/v1/datasets/{dataset_id}", {"ready", "failed"}, timeout=180)
    print(f"dataset failed {time.monotonic() - last_kill:.1f} s after the last kill")
    assert dataset["status"] == "failed", dataset
    assert dataset["error"].startswith(f"worker_lost: worker lost {MAX_DELIVERIES} times"), dataset
    assert "upload it again" in dataset["error"]
    # Nothing half-written is left: no temporary file, no Parquet; the upload itself stays.
    deadline = time.monotonic() + 10
    while temp_files(folder) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert temp_files(folder) == []
    assert not (folder / "data.parquet").exists()
    assert (folder / "raw").exists()
    # The pool was refilled after each kill: the next upload is ingested as usual.
    small = system.client.post("/v1/datasets", files={"file": ("s.csv", b"a,b\n1,2\n3,4\n")})
    assert (
        system.wait_for(f"/v1/datasets/{small.json()['id']}", {"ready", "failed"})["status"]
        == "ready"
    )


def test_a_starting_worker_sweeps_what_killed_processes_left(system: System) -> None:
    blobs = system.data_dir / "blobs"
    two_hours_ago = time.time() - 2 * 3600

    def plant(key: str, *, age_of: float | None = None) -> Path:
        path = blobs / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * 1024)
        if age_of is not None:
            os.utime(path, (age_of, age_of))
            os.utime(path.parent, (age_of, age_of))
        return path

    # A dead writer on this machine: removed whatever its age.
    dead = plant(f"jobs/job_x/{TEMP_PREFIX}shard-0.npy~{this_machine()}~999999999~abc")
    # Another machine's writer: judged by age only.
    stale = plant(f"jobs/job_x/{TEMP_PREFIX}shard-1.npy~othermachine~12~abc", age_of=two_hours_ago)
    fresh = plant(f"jobs/job_x/{TEMP_PREFIX}shard-2.npy~othermachine~12~abc")
    # An upload killed before its row was written, and one still streaming elsewhere.
    orphan = plant("datasets/ds_killedupload/raw", age_of=two_hours_ago)
    streaming = plant(f"datasets/ds_streaming/{TEMP_PREFIX}raw~othermachine~7~abc")

    system.processes.kill_worker()
    system.processes.start_worker()
    deadline = time.monotonic() + 90
    while (dead.exists() or stale.exists() or orphan.parent.exists()) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.2)
    assert not dead.exists() and not stale.exists()
    assert not orphan.parent.exists()
    assert fresh.exists() and streaming.exists()
    # The restarted worker takes work again.
    small = system.client.post("/v1/datasets", files={"file": ("s.csv", b"a,b\n1,2\n3,4\n")})
    assert (
        system.wait_for(f"/v1/datasets/{small.json()['id']}", {"ready", "failed"})["status"]
        == "ready"
    )


def test_an_upload_cut_off_by_a_killed_api_leaves_nothing_once_it_restarts(
    system: System,
) -> None:
    datasets = system.data_dir / "blobs" / "datasets"
    before = set(datasets.iterdir()) if datasets.is_dir() else set()
    boundary = "shardtrainkill"

    def slow_body() -> Iterator[bytes]:
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
            'filename="slow.csv"\r\nContent-Type: text/csv\r\n\r\na,b\r\n'
        ).encode()
        for _ in range(2000):
            yield b"1,2\r\n" * 20_000
            time.sleep(0.05)

    def upload() -> None:
        with contextlib.suppress(httpx.HTTPError):
            system.client.post(
                "/v1/datasets",
                content=slow_body(),
                headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=120,
            )

    uploading = threading.Thread(target=upload, daemon=True)
    uploading.start()
    deadline = time.monotonic() + 60
    while True:
        partial = [
            temp
            for folder in (set(datasets.iterdir()) if datasets.is_dir() else set()) - before
            for temp in temp_files(folder)
            if temp.stat().st_size > 1_000_000
        ]
        if partial:
            break
        assert time.monotonic() < deadline, "the upload never reached the disk"
        time.sleep(0.05)
    api = system.processes.api
    assert api is not None
    api.kill()  # SIGKILL mid-upload: no handler runs, the temporary file stays
    api.wait()
    uploading.join(timeout=30)
    assert partial[0].exists()
    system.processes.start_api()
    assert system.processes.api is not None
    wait_until_ready(system.client, system.processes.api, system.data_dir.parent / "api.log")
    # The restarted API's start-up sweep: the writer is dead, so no grace period applies.
    deadline = time.monotonic() + 30
    while partial[0].parent.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not partial[0].parent.exists()


def test_a_whole_worker_killed_mid_ingest_has_its_message_back_after_the_visibility_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The broker's own redelivery, with beat stopped so no watchdog re-sends: the
    message of a worker killed outright (nothing rejected, nothing acknowledged) comes
    back once VISIBILITY_TIMEOUT_S has passed, not after a fixed 6 hours."""
    visibility_s = 4
    server = OwnRedis(tmp_path / "redis")
    server.start()
    monkeypatch.setenv("SHARDTRAIN_VISIBILITY_TIMEOUT_S", str(visibility_s))
    try:
        (tmp_path / "system").mkdir()
        with running_system(tmp_path / "system", server.url) as system:
            assert system.processes.beat is not None
            stop(system.processes.beat)
            created = system.client.post("/v1/datasets", files={"file": ("big.csv", big_csv())})
            assert created.status_code == 201, created.text
            dataset_id = created.json()["id"]
            folder = system.data_dir / "blobs" / "datasets" / dataset_id
            wait_for_new_writer(folder, set())
            system.processes.kill_worker()
            time.sleep(visibility_s + 1)
            system.processes.start_worker()
            started = time.monotonic()
            dataset = system.wait_for(f"/v1/datasets/{dataset_id}", {"ready", "failed"})
            assert dataset["status"] == "ready", dataset
            print(f"ingest ready {time.monotonic() - started:.1f} s after the worker restarted")
            assert temp_files(folder) == []
    finally:
        server.kill()

"""The start-up sweep removes what killed processes left in blob storage, and nothing
that a live process is still writing."""

import os
import subprocess
import sys
import time
from pathlib import Path

from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.datasets.orphans import sweep_orphans
from app.db import session_scope
from app.main import create_app
from app.storage import BlobStore
from app.storage.temp_files import TEMP_PREFIX, abandoned, temp_prefix, this_machine
from app.tables import Dataset

HOUR = 3600.0


def plant(path: Path, *, age_s: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"partial")
    if age_s:
        then = time.time() - age_s
        os.utime(path, (then, then))
        os.utime(path.parent, (then, then))
    return path


def owned_by(folder: Path, pid: int, machine: str | None = None) -> Path:
    machine = this_machine() if machine is None else machine
    return folder / f"{TEMP_PREFIX}data.parquet~{machine}~{pid}~k3j2h1"


def test_a_temporary_file_names_its_writer() -> None:
    prefix = temp_prefix("data.parquet")
    assert prefix.startswith(f"{TEMP_PREFIX}data.parquet~{this_machine()}~{os.getpid()}~")


def test_a_dead_writers_file_is_abandoned_at_once_a_live_writers_never(tmp_path: Path) -> None:
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    # Killed but not yet reaped by its parent: a zombie still answers signal 0.
    zombie = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    zombie.kill()
    time.sleep(0.5)
    try:
        assert not abandoned(plant(owned_by(tmp_path, alive.pid), age_s=10 * HOUR), grace_s=HOUR)
        assert not abandoned(plant(owned_by(tmp_path, os.getpid())), grace_s=0)
        assert abandoned(plant(owned_by(tmp_path, dead.pid)), grace_s=HOUR)
        assert abandoned(plant(owned_by(tmp_path, zombie.pid)), grace_s=HOUR)
    finally:
        alive.kill()
        alive.wait()
        zombie.wait()


def test_another_machines_or_an_unnamed_file_is_judged_by_age(tmp_path: Path) -> None:
    elsewhere = owned_by(tmp_path / "a", 1, machine="othermachine")
    assert not abandoned(plant(elsewhere, age_s=HOUR / 2), grace_s=HOUR)
    assert abandoned(plant(elsewhere, age_s=2 * HOUR), grace_s=HOUR)
    unnamed = tmp_path / "b" / f"{TEMP_PREFIX}shard-0.npy-x8a7sd"
    assert not abandoned(plant(unnamed, age_s=HOUR / 2), grace_s=HOUR)
    assert abandoned(plant(unnamed, age_s=2 * HOUR), grace_s=HOUR)


def test_the_store_sweeps_only_abandoned_temporary_files(store: BlobStore) -> None:
    folder = store.path("jobs/job_1")
    keep = [
        plant(folder / "shard-0.npy", age_s=10 * HOUR),  # a blob, not a temporary file
        plant(owned_by(folder, os.getpid())),
        plant(folder / f"{TEMP_PREFIX}x~othermachine~5~abc"),
    ]
    gone = [
        plant(folder / f"{TEMP_PREFIX}x~othermachine~5~abd", age_s=2 * HOUR),
        plant(owned_by(folder / "deeper", 999_999_999)),
    ]
    assert sorted(store.sweep_temp_files(grace_s=HOUR)) == sorted(gone)
    assert all(p.exists() for p in keep)
    assert not any(p.exists() for p in gone)


def test_the_start_up_sweep_removes_orphaned_dataset_files_and_nothing_in_use(
    client: TestClient, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    def upload() -> str:
        response = client.post("/v1/datasets", files={"file": ("s.csv", SEED_EXAMPLE_CSV)})
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    processing, failed, deleted = upload(), upload(), upload()
    datasets = store.path("datasets")
    # The rows' own files are old too: only what they are decides, not their age.
    for dataset_id in (processing, failed, deleted):
        os.utime(datasets / dataset_id / "raw", (time.time() - 2 * HOUR,) * 2)
    with session_scope(sessions) as session:
        for row in session.query(Dataset).where(Dataset.id.in_([failed, deleted])):
            if row.id == failed:
                row.status, row.error = "failed", "worker_lost: ..."
            else:
                row.deleted_at = int(time.time())
    # An ingest's Parquet whose commit was lost before its dataset failed.
    stale_parquet = plant(datasets / failed / "data.parquet")
    # Killed mid-upload, before the row: the raw file, or still its temporary file.
    killed_upload = plant(datasets / "ds_killed" / "raw", age_s=2 * HOUR)
    killed_temp = plant(datasets / "ds_killedtemp" / f"{TEMP_PREFIX}raw-abc", age_s=2 * HOUR)
    # Killed a moment ago, on this machine: its writer is dead, so its age does not matter.
    just_killed = plant(owned_by(datasets / "ds_justkilled", 999_999_999))
    # An upload streaming in another API process: no row yet, but written to just now.
    streaming = plant(datasets / "ds_streaming" / f"{TEMP_PREFIX}raw~othermachine~9~abc")
    plant(datasets / "ds_streaming" / "name.txt", age_s=2 * HOUR)
    # Left by a delete whose removal after the commit never ran.
    plant(datasets / deleted / "data.parquet")

    report = sweep_orphans(sessions, store, grace_s=HOUR)

    assert not killed_upload.parent.exists() and not killed_temp.parent.exists()
    assert not just_killed.parent.exists()
    assert not (datasets / deleted).exists()
    assert not stale_parquet.exists() and (datasets / failed / "raw").exists()
    assert streaming.exists()
    assert (datasets / processing / "raw").exists()
    assert (report.folders, report.parquet_files) == (4, 1)
    assert report.temp_files == 0  # the killed uploads' went with their folders


def test_the_api_sweeps_when_it_starts(settings: Settings, api_key: str) -> None:
    orphan = plant(
        settings.blob_dir / "datasets" / "ds_gone" / f"{TEMP_PREFIX}raw~x~1~a", age_s=2 * HOUR
    )
    with TestClient(create_app(settings)):
        deadline = time.monotonic() + 20
        while orphan.parent.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert not orphan.parent.exists()

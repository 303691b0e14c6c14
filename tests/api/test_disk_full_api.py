"""A full disk, for real: the data directory on a small tmpfs of the test's own. An
upload that does not fit is refused with 507 and leaves nothing; an ingest that runs
out of space fails its dataset with a message about the server, not the file."""

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sample_data import table_to_csv
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.datasets.service import ingest_dataset
from app.db import session_scope
from app.main import create_app
from app.storage import BlobStore, LocalBlobStore

TMPFS_BYTES = 2 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mountpoint = tmp_path / "small-disk"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"this machine does not let the tests mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "-l", str(mountpoint)], check=False)


@pytest.fixture
def full_disk_client(
    settings: Settings, api_key: str, small_disk: Path
) -> Iterator[tuple[TestClient, BlobStore]]:
    on_small_disk = settings.model_copy(update={"data_dir": small_disk / "data"})
    app = create_app(on_small_disk)
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(app, raise_server_exceptions=False, headers=headers) as client:
        yield client, LocalBlobStore(on_small_disk.blob_dir)


def csv_of(rows: int) -> bytes:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(0)
    return table_to_csv(pa.table({f"x{i}": rng.normal(size=rows) for i in range(4)}))


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def test_an_upload_larger_than_the_free_space_is_507_and_leaves_nothing(
    full_disk_client: tuple[TestClient, BlobStore],
) -> None:
    client, store = full_disk_client
    too_big = csv_of(60_000)
    assert len(too_big) > TMPFS_BYTES
    response = client.post("/v1/datasets", files={"file": ("big.csv", too_big)})
    assert response.status_code == 507, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "api_error",
        "insufficient_storage",
        "file",
    )
    assert files_under(store.root) == []
    assert client.get("/v1/datasets").json()["data"] == []
    # The space the failed upload took is free again.
    small = client.post("/v1/datasets", files={"file": ("small.csv", csv_of(100))})
    assert small.status_code == 201, small.text


def test_an_ingest_that_fills_the_disk_fails_saying_so_and_leaves_no_temporary_file(
    full_disk_client: tuple[TestClient, BlobStore], sessions: sessionmaker[Session]
) -> None:
    client, store = full_disk_client
    created = client.post("/v1/datasets", files={"file": ("d.csv", csv_of(5_000))})
    assert created.status_code == 201, created.text
    dataset_id = created.json()["id"]
    # Leave almost no room for the Parquet copy.
    ballast = store.root / "ballast"
    with ballast.open("wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:
            pass
    with session_scope(sessions) as session:
        ingest_dataset(session, store, dataset_id)
    dataset = client.get(f"/v1/datasets/{dataset_id}").json()
    assert dataset["status"] == "failed"
    assert (
        "storage filled up" in dataset["error"]
        and "nothing is wrong with the file" in (dataset["error"])
    )
    leftovers = [p.name for p in files_under(store.root)]
    assert not [name for name in leftovers if name.startswith(".tmp-")], leftovers
    assert "data.parquet" not in leftovers

"""S3 answering badly: 503 SlowDown, reads that stall past the client's timeout, bodies
cut off mid-way. A fault proxy in front of the real test server spoils the answers its
rules pick; the store and the import copy must retry their way to the right bytes, and
give up cleanly when the store stays down."""

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from s3_faults import FaultyS3, faulty_s3
from s3_server import s3_endpoint as moto_endpoint
from s3_server import s3_test_client

from app.datasets.imports import copy_source
from app.datasets.ingest_error import IngestError
from app.storage import LocalBlobStore
from app.storage.cache import LocalCache
from app.storage.s3 import PART_BYTES, S3BlobStore

READ_TIMEOUT_S = 0.5


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture
def bucket(endpoint: str) -> str:
    name = f"faults-{uuid.uuid4().hex[:12]}"
    s3_test_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def proxy(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FaultyS3]]:
    # The default attempts, whatever the environment running the tests says.
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    with faulty_s3(endpoint, stall_s=READ_TIMEOUT_S * 4) as started:
        yield started


@pytest.fixture
def faults(proxy: tuple[str, FaultyS3]) -> FaultyS3:
    return proxy[1]


@pytest.fixture
def store(proxy: tuple[str, FaultyS3], bucket: str, tmp_path: Path) -> S3BlobStore:
    client = s3_test_client(proxy[0], read_timeout_s=READ_TIMEOUT_S)
    return S3BlobStore(f"s3://{bucket}/data", LocalCache(tmp_path / "cache", 1 << 30), client)


def objects(endpoint: str, bucket: str) -> list[str]:
    listed = s3_test_client(endpoint).list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def payload(size: int) -> bytes:
    return os.urandom(size)


def test_503s_on_part_uploads_and_reads_are_retried(store: S3BlobStore, faults: FaultyS3) -> None:
    data = payload(2 * PART_BYTES + 1000)  # three parts
    faults.fail("503", method="PUT", match="partNumber", times=2)
    faults.fail("503", method="POST", match="uploads", times=1)  # starting the upload
    store.put_bytes("big.bin", data)
    faults.fail("503", method="HEAD", times=1)
    faults.fail("503", method="GET", times=2)
    assert store.path("big.bin").read_bytes() == data
    assert store.read_bytes("big.bin") == data
    assert faults.count("503") == 6


def test_stalled_requests_time_out_and_are_retried(store: S3BlobStore, faults: FaultyS3) -> None:
    data = payload(100_000)
    faults.fail("stall", method="PUT", times=1)
    store.put_bytes("small.bin", data)
    faults.fail("stall", method="HEAD", times=1)
    faults.fail("stall", method="GET", times=1)
    assert store.exists("small.bin")
    assert store.read_bytes("small.bin") == data
    assert faults.count("stall") == 3


def test_a_cut_download_into_the_cache_is_fetched_again_whole(
    store: S3BlobStore, faults: FaultyS3
) -> None:
    data = payload(3 * 1024 * 1024)
    store.put_bytes("cut.bin", data)
    faults.fail("cut", method="GET", times=1)
    assert store.path("cut.bin").read_bytes() == data
    assert faults.count("cut") == 1


def test_the_default_is_five_attempts(proxy: tuple[str, FaultyS3]) -> None:
    retries = s3_test_client(proxy[0]).meta.config.retries
    assert (retries["mode"], retries["total_max_attempts"]) == ("standard", 5)


def test_a_store_that_stays_down_fails_after_its_attempts_and_keeps_nothing(
    proxy: tuple[str, FaultyS3],
    bucket: str,
    endpoint: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Fewer than the default 5, for the backoff's sake; AWS_MAX_ATTEMPTS is honoured.
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    url, faults = proxy
    client = s3_test_client(url, read_timeout_s=READ_TIMEOUT_S)
    store = S3BlobStore(f"s3://{bucket}/data", LocalCache(tmp_path / "cache", 1 << 30), client)
    faults.fail("503", times=None)
    with pytest.raises(ClientError, match="SlowDown"):
        store.put_bytes("never.bin", payload(1000))
    assert faults.count("503") == 3, faults.injected
    faults.clear()
    assert objects(endpoint, bucket) == []
    # A multipart upload that fails midway is aborted: no object, no open upload.
    faults.fail("503", method="PUT", match="partNumber=2", times=None)
    with pytest.raises(ClientError):
        store.put_bytes("half.bin", payload(PART_BYTES + 10))
    faults.clear()
    assert objects(endpoint, bucket) == []
    uploads = s3_test_client(endpoint).list_multipart_uploads(Bucket=bucket)
    assert uploads.get("Uploads", []) == []


def test_an_import_copy_cut_mid_body_resumes_where_it_stopped(
    proxy: tuple[str, FaultyS3], endpoint: str, bucket: str, tmp_path: Path
) -> None:
    url, faults = proxy
    data = payload(4 * 1024 * 1024 + 17)
    head = s3_test_client(endpoint).put_object(Bucket=bucket, Key="in/data.csv", Body=data)
    client = s3_test_client(url, read_timeout_s=READ_TIMEOUT_S)
    local = LocalBlobStore(tmp_path / "blobs")
    faults.fail("cut", method="GET", times=2)
    faults.fail("503", method="GET", times=1)
    with local.writer("datasets/ds_1/raw") as out:
        copy_source(client, f"s3://{bucket}/in/data.csv", head["ETag"], len(data), out)
    assert local.read_bytes("datasets/ds_1/raw") == data
    assert (faults.count("cut"), faults.count("503")) == (2, 1)


def test_an_import_copy_gives_up_with_a_reason_when_the_store_stays_down(
    proxy: tuple[str, FaultyS3],
    endpoint: str,
    bucket: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
    url, faults = proxy
    head = s3_test_client(endpoint).put_object(Bucket=bucket, Key="in/x.csv", Body=b"a\n1\n")
    client = s3_test_client(url, read_timeout_s=READ_TIMEOUT_S)
    local = LocalBlobStore(tmp_path / "blobs")
    faults.fail("503", times=None)
    with (
        pytest.raises(IngestError, match=r"stopped answering.*import it again"),
        local.writer("datasets/ds_2/raw") as out,
    ):
        copy_source(client, f"s3://{bucket}/in/x.csv", head["ETag"], 4, out)
    assert not local.exists("datasets/ds_2/raw")
    assert faults.count("503") == 2

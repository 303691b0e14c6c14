"""The S3 blob store against a real S3-protocol server on a local port (moto's server
mode, what s3fs and pyarrow test against), and its bounded local cache."""

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from s3_server import s3_endpoint as moto_endpoint
from s3_server import s3_test_client

from app.storage.cache import LocalCache
from app.storage.s3 import PART_BYTES, S3BlobStore, S3Location


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_endpoint() as url:
        yield url


@pytest.fixture
def client(endpoint: str) -> Any:
    return s3_test_client(endpoint)


@pytest.fixture
def bucket(client: Any) -> str:
    name = f"shardtrain-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(client: Any, bucket: str, tmp_path: Path) -> S3BlobStore:
    return S3BlobStore(
        f"s3://{bucket}/tenant/data", LocalCache(tmp_path / "cache", 1 << 30), client
    )


def objects(client: Any, bucket: str) -> list[str]:
    listed = client.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listed.get("Contents", []))


def test_a_url_names_a_bucket_and_a_prefix_and_keys_stay_inside_it() -> None:
    assert S3Location.parse("s3://b/p/q/") == S3Location("b", "p/q")
    assert S3Location.parse("s3://b") == S3Location("b", "")
    assert S3Location("b", "p").object_key("jobs/j/x.npy") == "p/jobs/j/x.npy"
    for bad in ("", "/abs", "a/../../b", "./a", "a//b", "a/"):
        with pytest.raises(ValueError, match="escapes"):
            S3Location("b", "p").object_key(bad)
    for url in ("file:///tmp/x", "s3://", "https://b/p"):
        with pytest.raises(ValueError, match="s3://"):
            S3Location.parse(url)


def test_bytes_round_trip_under_the_prefix(store: S3BlobStore, client: Any, bucket: str) -> None:
    store.put_bytes("datasets/ds_1/raw.csv", b"a,b\n1,2\n")
    assert store.exists("datasets/ds_1/raw.csv")
    assert not store.exists("datasets/ds_1/other.csv")
    assert store.read_bytes("datasets/ds_1/raw.csv") == b"a,b\n1,2\n"
    assert objects(client, bucket) == ["tenant/data/datasets/ds_1/raw.csv"]
    store.delete("datasets/ds_1/raw.csv")
    assert objects(client, bucket) == []
    with pytest.raises(FileNotFoundError, match=r"raw\.csv"):
        store.read_bytes("datasets/ds_1/raw.csv")


def test_a_large_write_goes_up_in_parts_and_arrives_whole(
    store: S3BlobStore, client: Any, bucket: str
) -> None:
    data = os.urandom(2 * PART_BYTES + 12345)
    with store.writer("models/m/artifact.safetensors") as out:
        for start in range(0, len(data), 1 << 20):
            out.write(data[start : start + (1 << 20)])
    assert out.bytes_written == len(data)
    assert out.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    head = client.head_object(Bucket=bucket, Key="tenant/data/models/m/artifact.safetensors")
    assert head["ETag"].strip('"').endswith("-3")  # three parts: two full, one tail
    assert store.read_bytes("models/m/artifact.safetensors") == data


def test_a_write_that_fails_midway_leaves_no_object_and_no_open_upload(
    store: S3BlobStore, client: Any, bucket: str
) -> None:
    with (
        pytest.raises(RuntimeError, match="disk gone"),
        store.writer("datasets/ds_2/raw.csv") as out,
    ):
        out.write(os.urandom(PART_BYTES + 1))  # one part already sent
        raise RuntimeError("disk gone")
    assert objects(client, bucket) == []
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    with pytest.raises(RuntimeError), store.writer("datasets/ds_3/raw.csv") as small:
        small.write(b"tiny")
        raise RuntimeError("cut off")
    assert objects(client, bucket) == []


def test_a_file_written_by_a_library_is_uploaded_only_when_complete(
    store: S3BlobStore, client: Any, bucket: str
) -> None:
    with store.temporary_path("jobs/j/shards/0.npy") as tmp, tmp.open("wb") as handle:
        np.save(handle, np.arange(10))
    assert np.load(store.path("jobs/j/shards/0.npy")).tolist() == list(range(10))
    with pytest.raises(ValueError), store.temporary_path("jobs/j/shards/1.npy") as tmp:
        tmp.write_bytes(b"half")
        raise ValueError("killed")
    assert objects(client, bucket) == ["tenant/data/jobs/j/shards/0.npy"]
    assert not list(store.cache.root.glob(".tmp-*"))


def test_a_local_copy_is_fetched_once_per_content_and_mapped(store: S3BlobStore) -> None:
    np.save(store.cache.root / "src.npy", np.arange(1000, dtype=np.int64))
    store.put_bytes("jobs/j/part.npy", (store.cache.root / "src.npy").read_bytes())
    first = store.path("jobs/j/part.npy")
    mapped = np.load(first, mmap_mode="r")
    assert int(mapped.sum()) == 499500
    first.write_bytes(b"tampered")  # were it fetched again, this would be overwritten
    assert store.path("jobs/j/part.npy") == first
    assert first.read_bytes() == b"tampered"
    # New bytes under the same key are new content: another entry, never the stale one.
    store.put_bytes("jobs/j/part.npy", b"second version")
    second = store.path("jobs/j/part.npy")
    assert second != first and second.read_bytes() == b"second version"


def test_a_missing_object_has_no_local_copy(store: S3BlobStore) -> None:
    with pytest.raises(FileNotFoundError, match=r"jobs/j/none\.npy"):
        store.path("jobs/j/none.npy")
    assert store.cache.used_bytes() == 0


def test_the_cache_keeps_the_most_recently_used_within_its_bytes(
    client: Any, bucket: str, tmp_path: Path
) -> None:
    store = S3BlobStore(f"s3://{bucket}", LocalCache(tmp_path / "small", 2500), client)
    for name in "abc":
        store.put_bytes(name, name.encode() * 1000)
    a = store.path("a")
    b = store.path("b")
    os.utime(a, ns=(1, 1))  # a is the least recently used
    c = store.path("c")
    assert not a.exists() and b.exists() and c.exists()
    assert store.cache.used_bytes() <= 2500
    # An entry larger than the whole cache is still served; the others make way.
    store.put_bytes("big", b"x" * 4000)
    assert store.path("big").read_bytes() == b"x" * 4000
    assert not b.exists() and not c.exists()


def test_deleting_a_prefix_deletes_its_objects_and_nothing_beside_it(
    store: S3BlobStore, client: Any, bucket: str
) -> None:
    for key in ("jobs/j1/a.npy", "jobs/j1/shards/0.npy", "jobs/j10/a.npy", "jobs/j1"):
        store.put_bytes(key, b"x")
    assert sorted(store.keys("jobs/j1")) == ["jobs/j1/a.npy", "jobs/j1/shards/0.npy"]
    store.delete_prefix("jobs/j1")
    assert objects(client, bucket) == ["tenant/data/jobs/j10/a.npy"]


def test_many_objects_under_a_prefix_are_deleted_page_by_page(
    store: S3BlobStore, client: Any, bucket: str
) -> None:
    for index in range(1005):
        client.put_object(Bucket=bucket, Key=f"tenant/data/batch/b/{index}.parquet", Body=b"")
    store.delete_prefix("batch/b")
    assert objects(client, bucket) == []


def test_a_presigned_url_downloads_without_credentials(store: S3BlobStore) -> None:
    store.put_bytes("models/m/model.onnx", b"onnx bytes")
    url = store.presigned_url("models/m/model.onnx", expires_s=60)
    assert "Signature" in url or "X-Amz-Signature" in url
    assert httpx.get(url).content == b"onnx bytes"


def test_children_and_last_written_are_what_the_orphan_sweep_reads(store: S3BlobStore) -> None:
    for key in ("datasets/ds_a/raw", "datasets/ds_a/data.parquet", "datasets/ds_b/raw", "jobs/j/x"):
        store.put_bytes(key, b"x")
    assert store.children("datasets") == ["ds_a", "ds_b"]
    assert store.children("models") == []
    now = time.time()
    written = store.last_written("datasets/ds_a", grace_s=60, now=now)
    assert now - 60 < written <= now + 1
    # Nothing under the prefix: nothing that a sweep could take from a live upload.
    assert store.last_written("datasets/ds_gone", grace_s=60, now=now) == now

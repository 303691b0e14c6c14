"""`POST /v1/datasets` with `{"url": "s3://…"}`: imports from a real S3-protocol server
(moto's), checked by the API, copied in by the worker's ingest step, on PostgreSQL and
SQLite."""

import hashlib
import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dbsetup import issue_key
from fastapi.testclient import TestClient
from s3_server import s3_endpoint, s3_test_client
from sample_data import SEED_EXAMPLE_CSV
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.datasets.ingest_run import ingest_dataset
from app.db import session_factory, session_scope
from app.main import create_app
from app.storage import BlobStore
from app.tenancy.repository import TenantRepository

BUCKET = "imports"


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with s3_endpoint() as url:
        s3_test_client(url).create_bucket(Bucket=BUCKET)
        yield url


@pytest.fixture
def s3(endpoint: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The bucket, and the server's own credentials pointed at it."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    client = s3_test_client(endpoint)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])


def _tenant_id(settings: Settings, name: str = "tests") -> str:
    with session_scope(session_factory(settings.database_url)) as session:
        tenant = TenantRepository(session).by_name(name)
        assert tenant is not None
        return tenant.id


def _client(settings: Settings, tenant: str = "tests", **overrides: Any) -> TestClient:
    configured = settings.model_copy(
        update={
            "import_allowed_prefixes": [f"s3://{BUCKET}/{{tenant}}/", f"s3://{BUCKET}/public"],
            **overrides,
        }
    )
    key = issue_key(settings.database_url, tenant)
    return TestClient(
        create_app(configured),
        raise_server_exceptions=False,
        headers={"Authorization": f"Bearer {key}"},
    )


@pytest.fixture
def api(settings: Settings, s3: Any) -> Iterator[TestClient]:
    with _client(settings) as client:
        yield client


@pytest.fixture
def home(api: TestClient, settings: Settings) -> str:
    """The tenant's own folder, which the `{tenant}` prefix allows."""
    return _tenant_id(settings)


def _put(s3: Any, key: str, data: bytes) -> str:
    s3.put_object(Bucket=BUCKET, Key=key, Body=data)
    return f"s3://{BUCKET}/{key}"


def _ingest(sessions: sessionmaker[Session], store: BlobStore, dataset_id: str) -> None:
    with session_scope(sessions) as session:
        ingest_dataset(session, store, dataset_id)


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def test_an_allowed_object_is_copied_in_and_ingested(
    home: str, api: TestClient, s3: Any, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    url = _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    response = api.post("/v1/datasets", json={"url": url, "name": "seed"})
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["status"] == "processing"
    assert dataset["source_url"] == url
    assert dataset["format"] == "csv"
    assert dataset["bytes"] == len(SEED_EXAMPLE_CSV)
    assert dataset["name"] == "seed"
    # Not known before the worker has read every byte.
    assert dataset["sha256"] is None

    _ingest(sessions, store, dataset["id"])
    ready = api.get(f"/v1/datasets/{dataset['id']}").json()
    assert ready["status"] == "ready", ready
    assert ready["rows"] == SEED_EXAMPLE_CSV.count(b"\n") - 1
    assert ready["sha256"] == hashlib.sha256(SEED_EXAMPLE_CSV).hexdigest()
    assert store.read_bytes(f"datasets/{dataset['id']}/raw") == SEED_EXAMPLE_CSV
    # The dataset owns its copy: the source going away does not touch it, and deleting
    # the dataset leaves the source alone.
    s3.delete_object(Bucket=BUCKET, Key=f"{home}/seed.csv")
    assert api.get(f"/v1/datasets/{dataset['id']}/preview").status_code == 200
    _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    assert api.delete(f"/v1/datasets/{dataset['id']}").status_code == 200
    assert not store.exists(f"datasets/{dataset['id']}/raw")
    assert s3.head_object(Bucket=BUCKET, Key=f"{home}/seed.csv")["ContentLength"] > 0


def test_parquet_imports_with_its_name_from_the_key(
    api: TestClient, s3: Any, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    buffer = io.BytesIO()
    pq.write_table(pa.table({"x": [1.0, 2.0, 3.0], "y": [0, 1, 0]}), buffer)
    url = _put(s3, "public/tables/small.parquet", buffer.getvalue())
    dataset = api.post("/v1/datasets", json={"url": url}).json()
    assert (dataset["format"], dataset["name"]) == ("parquet", "small.parquet")
    _ingest(sessions, store, dataset["id"])
    assert api.get(f"/v1/datasets/{dataset['id']}").json()["rows"] == 3


@pytest.mark.parametrize(
    "key",
    [
        "other-tenant/seed.csv",  # another tenant's {tenant} folder
        "public2/seed.csv",  # "public" is a folder, not the start of any name
        "seed.csv",
    ],
)
def test_a_url_outside_the_allowed_prefixes_is_403_naming_it(
    api: TestClient, s3: Any, key: str
) -> None:
    url = _put(s3, key, SEED_EXAMPLE_CSV)
    error = _error(api.post("/v1/datasets", json={"url": url}), 403)
    assert error["code"] == "import_not_allowed"
    assert error["param"] == "url"
    assert url in error["message"]
    assert api.get("/v1/datasets").json()["data"] == []


def test_with_no_prefixes_allowed_every_import_is_403(
    home: str, settings: Settings, s3: Any
) -> None:
    url = _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    with _client(settings, import_allowed_prefixes=[]) as client:
        error = _error(client.post("/v1/datasets", json={"url": url}), 403)
    assert "SHARDTRAIN_IMPORT_ALLOWED_PREFIXES" in error["message"]


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "https://example.com/data.csv",
        "s3://imports/tests/",
        "s3://imports/tests/../public/x.csv",
        "s3://imports/tests//x.csv",
        "s3:///tests/x.csv",
    ],
)
def test_a_url_that_is_not_an_s3_object_is_422(api: TestClient, url: str) -> None:
    error = _error(api.post("/v1/datasets", json={"url": url}), 422)
    assert error["param"] == "url"


def test_a_missing_object_is_422_and_records_nothing(home: str, api: TestClient) -> None:
    url = f"s3://{BUCKET}/{home}/absent.csv"
    error = _error(api.post("/v1/datasets", json={"url": url}), 422)
    assert (error["code"], error["param"]) == ("object_not_found", "url")
    assert url in error["message"]
    assert api.get("/v1/datasets").json()["data"] == []


def test_an_object_that_is_not_tabular_gets_the_uploads_415(
    home: str, api: TestClient, s3: Any
) -> None:
    url = _put(s3, f"{home}/archive.csv", b"PK\x03\x04" + b"\x00" * 100)
    error = _error(api.post("/v1/datasets", json={"url": url}), 415)
    assert (error["code"], error["param"]) == ("unsupported_format", "url")
    assert "zip" in error["message"]


def test_an_empty_object_is_422(home: str, api: TestClient, s3: Any) -> None:
    url = _put(s3, f"{home}/empty.csv", b"")
    assert _error(api.post("/v1/datasets", json={"url": url}), 422)["code"] == "empty_file"


def test_an_object_over_the_upload_limit_is_413(home: str, settings: Settings, s3: Any) -> None:
    url = _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    with _client(settings, max_upload_bytes=10) as client:
        error = _error(client.post("/v1/datasets", json={"url": url}), 413)
    assert (error["code"], error["param"]) == ("file_too_large", "url")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"url": "s3://imports/tests/a.csv", "bucket": "x"}, "bucket"),
        ({"name": "no url"}, "url"),
        ({"url": "s3://imports/tests/a.csv", "name": "n" * 256}, "name"),
    ],
)
def test_a_bad_body_is_422_naming_the_field(
    api: TestClient, body: dict[str, Any], param: str
) -> None:
    assert _error(api.post("/v1/datasets", json=body), 422)["param"] == param


def test_a_body_that_is_not_json_is_422(api: TestClient) -> None:
    response = api.post(
        "/v1/datasets", content=b"{url: nope", headers={"Content-Type": "application/json"}
    )
    assert _error(response, 422)["code"] == "invalid_json"


def test_a_retried_import_with_its_idempotency_key_is_one_dataset(
    home: str, api: TestClient, s3: Any
) -> None:
    url = _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    headers = {"Idempotency-Key": "import-1"}
    first = api.post("/v1/datasets", json={"url": url}, headers=headers).json()
    again = api.post("/v1/datasets", json={"url": url}, headers=headers).json()
    assert first["id"] == again["id"]
    assert len(api.get("/v1/datasets").json()["data"]) == 1


def test_an_object_deleted_before_the_copy_fails_the_dataset_and_leaves_nothing(
    home: str, api: TestClient, s3: Any, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    url = _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    dataset = api.post("/v1/datasets", json={"url": url}).json()
    s3.delete_object(Bucket=BUCKET, Key=f"{home}/seed.csv")
    _ingest(sessions, store, dataset["id"])
    failed = api.get(f"/v1/datasets/{dataset['id']}").json()
    assert failed["status"] == "failed"
    assert url in failed["error"] and "deleted" in failed["error"]
    folder = store.path(f"datasets/{dataset['id']}")
    assert not folder.exists() or list(folder.iterdir()) == []


def test_an_object_replaced_before_the_copy_fails_rather_than_ingest_unchecked_bytes(
    home: str, api: TestClient, s3: Any, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    url = _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    dataset = api.post("/v1/datasets", json={"url": url}).json()
    _put(s3, f"{home}/seed.csv", b"PK\x03\x04" + b"\x00" * 100)
    _ingest(sessions, store, dataset["id"])
    failed = api.get(f"/v1/datasets/{dataset['id']}").json()
    assert failed["status"] == "failed"
    assert "replaced" in failed["error"] and url in failed["error"]
    folder = store.path(f"datasets/{dataset['id']}")
    assert not folder.exists() or list(folder.iterdir()) == []


def test_a_bad_file_fails_with_the_uploads_line_and_column(
    home: str, api: TestClient, s3: Any, sessions: sessionmaker[Session], store: BlobStore
) -> None:
    url = _put(s3, f"{home}/ragged.csv", b"a,b\n1,2\n3,4,5\n")
    dataset = api.post("/v1/datasets", json={"url": url}).json()
    _ingest(sessions, store, dataset["id"])
    failed = api.get(f"/v1/datasets/{dataset['id']}").json()
    assert failed["status"] == "failed"
    assert "line 3" in failed["error"]
    # The copy was whole and is kept, as an upload's raw file is, until the delete.
    assert failed["sha256"] == hashlib.sha256(b"a,b\n1,2\n3,4,5\n").hexdigest()


def test_an_import_counts_against_the_storage_quota(home: str, settings: Settings, s3: Any) -> None:
    url = _put(s3, f"{home}/seed.csv", SEED_EXAMPLE_CSV)
    with _client(settings, quota_max_stored_bytes=len(SEED_EXAMPLE_CSV) + 10) as client:
        assert client.post("/v1/datasets", json={"url": url}).status_code == 201
        error = _error(client.post("/v1/datasets", json={"url": url}), 409)
    assert (error["code"], error["param"]) == ("quota_exceeded", "url")

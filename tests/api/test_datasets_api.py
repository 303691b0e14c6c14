"""Dataset endpoints on real PostgreSQL and SQLite (each test runs on both)."""

from fastapi.testclient import TestClient
from sample_data import SEED_EXAMPLE_CSV

from app.config import Settings
from app.storage import LocalBlobStore


def upload(client: TestClient, name: str, data: bytes):  # type: ignore[no-untyped-def]
    return client.post("/v1/datasets", files={"file": (name, data)})


def test_upload_returns_a_processing_dataset(client: TestClient) -> None:
    response = upload(client, "seed.csv", SEED_EXAMPLE_CSV)
    assert response.status_code == 201
    body = response.json()
    assert body["object"] == "dataset"
    assert body["id"].startswith("ds_")
    assert body["status"] == "processing"
    assert body["format"] == "csv"
    assert body["bytes"] == len(SEED_EXAMPLE_CSV)
    assert len(body["sha256"]) == 64
    assert client.get(f"/v1/datasets/{body['id']}").json()["id"] == body["id"]


def test_upload_stores_the_bytes(client: TestClient, settings: Settings) -> None:
    body = upload(client, "seed.csv", SEED_EXAMPLE_CSV).json()
    stored = LocalBlobStore(settings.blob_dir).read_bytes(f"datasets/{body['id']}/raw")
    assert stored == SEED_EXAMPLE_CSV


def test_file_name_is_a_label_not_a_path(client: TestClient, settings: Settings) -> None:
    body = upload(client, "../../etc/passwd.csv", SEED_EXAMPLE_CSV).json()
    assert body["name"] == "../../etc/passwd.csv"
    assert not (settings.blob_dir.parent / "etc").exists()


def test_zip_file_is_unsupported(client: TestClient, settings: Settings) -> None:
    response = upload(client, "data.csv", b"PK\x03\x04" + b"\x00" * 100)
    assert response.status_code == 415
    error = response.json()["error"]
    assert error["code"] == "unsupported_format"
    assert error["param"] == "file"
    assert "zip" in error["message"]
    assert not list((settings.blob_dir / "datasets").glob("*/raw"))


def test_pickle_is_unsupported(client: TestClient) -> None:
    response = upload(client, "data.pkl", b"\x80\x04\x95" + b"\x00" * 20)
    assert response.status_code == 415
    assert "pickle" in response.json()["error"]["message"]


def test_empty_file_is_422(client: TestClient) -> None:
    response = upload(client, "empty.csv", b"")
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "file"


def test_upload_over_the_limit_is_413_and_leaves_no_blob(settings: Settings, api_key: str) -> None:
    from app.main import create_app

    small = settings.model_copy(update={"max_upload_bytes": 10})
    headers = {"Authorization": f"Bearer {api_key}"}
    with TestClient(create_app(small), headers=headers) as client:
        response = upload(client, "seed.csv", SEED_EXAMPLE_CSV)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "file_too_large"
    datasets_dir = small.blob_dir / "datasets"
    assert not datasets_dir.exists() or not any(datasets_dir.rglob("*"))


def test_missing_file_field_names_it(client: TestClient) -> None:
    response = client.post("/v1/datasets", files={"name": (None, "x")})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "file"


def test_a_body_that_is_not_multipart_is_415(client: TestClient) -> None:
    response = client.post("/v1/datasets", content=b"a,b\n1,2\n")
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


def test_name_field_labels_the_dataset(client: TestClient) -> None:
    files = {"file": ("seed.csv", SEED_EXAMPLE_CSV), "name": (None, "my data")}
    assert client.post("/v1/datasets", files=files).json()["name"] == "my data"


def test_overlong_name_is_422(client: TestClient) -> None:
    files = {"file": ("seed.csv", SEED_EXAMPLE_CSV), "name": (None, "n" * 300)}
    response = client.post("/v1/datasets", files=files)
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "name"


def test_unknown_dataset_is_404_error_object(client: TestClient) -> None:
    response = client.get("/v1/datasets/ds_nope")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error == {
        "type": "not_found_error",
        "code": "not_found",
        "message": "No dataset with id 'ds_nope'.",
        "param": "id",
    }


def test_list_pages_newest_first(client: TestClient) -> None:
    ids = [upload(client, f"d{i}.csv", SEED_EXAMPLE_CSV).json()["id"] for i in range(3)]
    first = client.get("/v1/datasets", params={"limit": 2}).json()
    assert first["object"] == "list"
    assert [d["id"] for d in first["data"]] == [ids[2], ids[1]]
    assert first["has_more"] is True
    second = client.get("/v1/datasets", params={"limit": 2, "after": ids[1]}).json()
    assert [d["id"] for d in second["data"]] == [ids[0]]
    assert second["has_more"] is False


def test_list_limit_out_of_range_names_the_param(client: TestClient) -> None:
    response = client.get("/v1/datasets", params={"limit": 0})
    assert response.status_code == 422
    assert response.json()["error"]["param"] == "limit"


def test_preview_shows_the_first_rows(client: TestClient, ready_dataset) -> None:  # type: ignore[no-untyped-def]
    csv = b"x,y,label\n1,2.5,a\n2,,b\n3,4.5,a\n"
    dataset_id = ready_dataset("small.csv", csv)
    body = client.get(f"/v1/datasets/{dataset_id}/preview", params={"limit": 2}).json()
    assert body["object"] == "dataset.preview"
    assert body["data"] == [{"x": 1, "y": 2.5, "label": "a"}, {"x": 2, "y": None, "label": "b"}]
    assert body["has_more"] is True
    everything = client.get(f"/v1/datasets/{dataset_id}/preview", params={"limit": 10}).json()
    assert len(everything["data"]) == 3 and everything["has_more"] is False


def test_preview_of_a_processing_dataset_is_409(client: TestClient) -> None:
    dataset_id = upload(client, "seed.csv", SEED_EXAMPLE_CSV).json()["id"]
    response = client.get(f"/v1/datasets/{dataset_id}/preview")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "dataset_not_ready"


def test_delete_removes_the_bytes_and_hides_the_dataset(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset, settings: Settings
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    folder = settings.blob_dir / "datasets" / dataset_id
    assert (folder / "raw").exists() and (folder / "data.parquet").exists()
    response = client.delete(f"/v1/datasets/{dataset_id}")
    assert response.status_code == 200
    assert response.json() == {"id": dataset_id, "object": "dataset", "deleted": True}
    assert not folder.exists()
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 404
    assert dataset_id not in [d["id"] for d in client.get("/v1/datasets").json()["data"]]
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 404
    job = client.post("/v1/jobs", json={"dataset_id": dataset_id, "target": "label"})
    assert job.status_code == 404


def test_delete_while_a_job_is_queued_is_409(client: TestClient, ready_dataset) -> None:  # type: ignore[no-untyped-def]
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    spec = {
        "dataset_id": dataset_id,
        "target": "label",
        "distribution": {"shards": 1},
    }
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    response = client.delete(f"/v1/datasets/{dataset_id}")
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "dataset_in_use" and job_id in error["message"]
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200


def test_failed_ingest_records_the_line_and_keeps_no_parquet(  # type: ignore[no-untyped-def]
    client: TestClient, ready_dataset, settings: Settings
) -> None:
    dataset_id = ready_dataset("ragged.csv", b"a,b,c\n1,2,3\n4,5\n")
    body = client.get(f"/v1/datasets/{dataset_id}").json()
    assert body["status"] == "failed"
    assert body["error"] == "line 3: expected 3 fields, found 2"
    assert body["rows"] is None and body["columns"] is None
    folder = settings.blob_dir / "datasets" / dataset_id
    assert sorted(p.name for p in folder.iterdir()) == ["raw"]

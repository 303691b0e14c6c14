"""API keys and tenant isolation, walked endpoint by endpoint."""

import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from dbsetup import ROOT, issue_key
from fastapi.testclient import TestClient
from inprocess import run_job
from sample_data import SEED_EXAMPLE_CSV

from app.config import Settings
from app.db import session_factory, session_scope
from app.main import create_app
from app.tenancy.service import revoke_key

MakeDataset = Callable[[str, bytes], str]


def test_missing_or_wrong_key_is_401(settings: Settings) -> None:
    with TestClient(create_app(settings)) as anonymous:
        missing = anonymous.get("/v1/datasets")
        wrong = anonymous.get("/v1/datasets", headers={"Authorization": "Bearer sk_nope"})
    assert missing.status_code == wrong.status_code == 401
    assert missing.json()["error"]["code"] == "missing_api_key"
    assert wrong.json()["error"] == {
        "type": "authentication_error",
        "code": "invalid_api_key",
        "message": "The API key is not valid or was revoked.",
        "param": None,
    }


def test_health_docs_and_schema_stay_open(settings: Settings) -> None:
    with TestClient(create_app(settings)) as anonymous:
        for path in ("/healthz", "/readyz", "/docs", "/openapi.json"):
            assert anonymous.get(path).status_code == 200, path
        schema = anonymous.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["ApiKey"]
    assert scheme == {
        "type": "http",
        "scheme": "bearer",
        "description": scheme["description"],
    }
    secured = [
        op["operationId"]
        for path, item in schema["paths"].items()
        for op in item.values()
        if op.get("security") == [{"ApiKey": []}]
    ]
    assert "datasets-create" in secured and "models-predict" in secured
    assert "health-live" not in secured


def test_a_revoked_key_fails_on_its_next_request(client: TestClient, settings: Settings) -> None:
    key = issue_key(settings.database_url, "revokers")
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/datasets", headers=headers).status_code == 200
    with session_scope(session_factory(settings.database_url)) as session:
        revoke_key(session, key[:12])
    assert client.get("/v1/datasets", headers=headers).status_code == 401


def test_another_tenant_sees_nothing_of_ours(  # type: ignore[no-untyped-def]
    client: TestClient, settings: Settings, ready_dataset: MakeDataset, sessions, store, params
) -> None:
    dataset_id = ready_dataset("seed.csv", SEED_EXAMPLE_CSV)
    spec = {
        "dataset_id": dataset_id,
        "target": "label",
        "distribution": {"shards": 1},
        "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
        "training": {"rounds": 2},
    }
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    run_job(sessions, store, params, job_id)
    model_id = client.get(f"/v1/jobs/{job_id}").json()["model_id"]
    batch = client.post(
        f"/v1/models/{model_id}/batch_predictions", json={"dataset_id": dataset_id}
    ).json()

    other = {"Authorization": f"Bearer {issue_key(settings.database_url, 'intruders')}"}
    record = {"inputs": [{"x1": 1, "x2": 2}]}
    for method, path, body in [
        ("GET", f"/v1/datasets/{dataset_id}", None),
        ("GET", f"/v1/datasets/{dataset_id}/preview", None),
        ("DELETE", f"/v1/datasets/{dataset_id}", None),
        ("POST", "/v1/jobs", spec),
        ("GET", f"/v1/jobs/{job_id}", None),
        ("GET", f"/v1/jobs/{job_id}/metrics", None),
        ("GET", f"/v1/jobs/{job_id}/events", None),
        ("POST", f"/v1/jobs/{job_id}/cancel", None),
        ("POST", f"/v1/jobs/{job_id}/rerun", None),
        ("GET", f"/v1/models/{model_id}", None),
        ("POST", f"/v1/models/{model_id}/predict", record),
        ("POST", f"/v1/models/{model_id}/deploy", None),
        ("GET", f"/v1/models/{model_id}/artifact", None),
        ("POST", f"/v1/models/{model_id}/batch_predictions", {"dataset_id": dataset_id}),
        ("GET", f"/v1/models/{model_id}/batch_predictions/{batch['id']}", None),
        ("GET", f"/v1/models/{model_id}/batch_predictions/{batch['id']}/output", None),
    ]:
        response = client.request(method, path, json=body, headers=other)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["error"]["type"] == "not_found_error"
    for path in ("/v1/datasets", "/v1/jobs", "/v1/models"):
        assert client.get(path, headers=other).json()["data"] == [], path
        assert client.get(path).json()["data"] != [], path
    # Our own objects are untouched by the attempts.
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 200
    assert client.get(f"/v1/jobs/{job_id}").json()["status"] == "succeeded"


def test_admin_commands_issue_and_revoke_keys(settings: Settings) -> None:
    env = {**os.environ, "SHARDTRAIN_DATABASE_URL": settings.database_url}

    def admin(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "app.admin", *args],
            cwd=ROOT, env=env, capture_output=True, text=True,
        )  # fmt: skip

    assert admin("create-tenant", "acme").returncode == 0
    assert admin("create-tenant", "acme").returncode == 2  # already exists
    created = admin("create-key", "--tenant", "acme")
    assert created.returncode == 0
    key = created.stdout.strip()
    assert key.startswith("sk_") and len(key) > 40
    with TestClient(create_app(settings), headers={"Authorization": f"Bearer {key}"}) as acme:
        assert acme.get("/v1/jobs").status_code == 200
        assert admin("revoke-key", key[:12]).returncode == 0
        assert acme.get("/v1/jobs").status_code == 401
    assert admin("create-key", "--tenant", "nobody").returncode == 2


@pytest.mark.parametrize("where", ["app", "workers"])
def test_nothing_unpickles(where: str) -> None:
    """No pickle.load(s), no torch.load without weights_only=True, no allow_pickle=True."""
    offenders = []
    for path in (ROOT / where).rglob("*.py"):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            unsafe = (
                "pickle.load" in line
                or ("torch.load(" in line and "weights_only=True" not in line)
                or "allow_pickle=True" in line
                or "task_always_eager" in line
            )
            if unsafe:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []

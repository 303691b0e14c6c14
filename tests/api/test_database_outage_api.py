"""The API while its PostgreSQL is down: a PostgreSQL cluster of the test's own, stopped
and started again under a real uvicorn. Calls answer 503 `database_unavailable` with
Retry-After and no traceback, the log has one line for the outage and one for its end,
predict on a model already served keeps answering, an upload is refused before its body
is sent, and a restart shorter than the connect retry does not surface at all."""

import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pyarrow as pa
import pytest
import redis
from dbsetup import issue_key, migrate
from inprocess import run_job
from live_server import serve
from own_postgres import OwnPostgres
from sample_data import SEED_EXAMPLE_CSV
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from app.config import Settings
from app.database_health import RETRY_AFTER_S
from app.datasets.service import ingest_dataset
from app.db import session_scope
from app.main import create_app
from app.paramstore import ParamStore
from app.registry.inputs import ARROW_STREAM
from app.storage import LocalBlobStore
from app.tenancy.service import revoke_key

SEED_SPEC = {
    "target": "label",
    "model_name": "seed",
    "distribution": {"shards": 1},
    "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    "training": {"rounds": 5, "learning_rate": 0.1},
}
ROW = {"inputs": [{"x1": 2, "x2": 3}]}


@dataclass
class Outage:
    pg: OwnPostgres
    settings: Settings
    url: str
    key: str
    model_id: str


@pytest.fixture(scope="module")
def outage(tmp_path_factory: pytest.TempPathFactory, redis_client: redis.Redis) -> Iterator[Outage]:
    workdir = tmp_path_factory.mktemp("outage")
    pg = OwnPostgres(workdir)
    pg.start()
    try:
        database_url = pg.create_database("shardtrain")
        migrate(database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=os.environ["SHARDTRAIN_REDIS_URL"],
            data_dir=workdir / "data",
        )
        key = issue_key(database_url, "outage")
        model_id = _train(settings, key, redis_client)
        with serve(create_app(settings)) as url:
            yield Outage(pg, settings, url, key, model_id)
    finally:
        pg.remove()


def _train(settings: Settings, key: str, client: redis.Redis) -> str:
    """A deployed model, trained by the real stage functions in this process."""
    from fastapi.testclient import TestClient

    sessions = sessionmaker(create_engine(settings.database_url), expire_on_commit=False)
    store = LocalBlobStore(settings.blob_dir)
    params = ParamStore(client, chunk_bytes=1 << 20, ttl_s=600)
    headers = {"Authorization": f"Bearer {key}"}
    with TestClient(create_app(settings), headers=headers) as http:
        upload = http.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)})
        assert upload.status_code == 201, upload.text
        with session_scope(sessions) as session:
            ingest_dataset(session, store, upload.json()["id"])
        job = http.post("/v1/jobs", json={"dataset_id": upload.json()["id"], **SEED_SPEC})
        assert job.status_code == 201, job.text
        run_job(sessions, store, params, job.json()["id"])
        model_id = http.get(f"/v1/jobs/{job.json()['id']}").json()["model_id"]
        assert http.get(f"/v1/models/{model_id}").json()["status"] == "deployed"
    sessions.kw["bind"].dispose()
    return str(model_id)


def _arrow_body(columns: dict[str, list[int]]) -> bytes:
    table = pa.table(columns)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue().to_pybytes())


def _client(outage: Outage, key: str | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=outage.url,
        timeout=30,
        headers={"Authorization": f"Bearer {key or outage.key}"},
    )


def _health_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "app.database_health"]


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["retry-after"] == str(RETRY_AFTER_S)
    assert response.json() == {
        "error": {
            "type": "api_error",
            "code": "database_unavailable",
            "message": "The database is unreachable; retry in a few seconds.",
            "param": None,
        }
    }


def _refused_before_body(outage: Outage, declared: int) -> tuple[bytes, int]:
    """Start an upload of `declared` bytes, sending 64 KiB at a time, slowly; stop
    sending once an answer arrives. The answer's head and the bytes sent by then."""
    boundary = "x" * 16
    head = (
        f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {outage.key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {declared}\r\n\r\n"
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="big.csv"\r\n\r\nx1,x2,label\r\n'
    ).encode()
    port = int(outage.url.rsplit(":", 1)[1])
    sent = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(head)
        sent += len(head)
        sock.settimeout(0.2)
        answer = b""
        while sent < declared:
            try:
                answer = sock.recv(65536)
                break
            except TimeoutError:
                pass
            chunk = b"1,2,1\n" * (65536 // 6)
            try:
                sock.sendall(chunk)
            except OSError:  # the server closed the connection after answering
                break
            sent += len(chunk)
        sock.settimeout(10)
        while b"\r\n\r\n" not in answer:
            more = sock.recv(65536)
            if not more:
                break
            answer += more
    return answer, sent


def test_database_outage_answers_503_serves_loaded_models_and_logs_once(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    with _client(outage) as http:
        served = http.post(f"/v1/models/{outage.model_id}/predict", json=ROW)
        assert served.status_code == 200, served.text
        caplog.set_level(logging.INFO)
        outage.pg.stop()
        try:
            # The first request of an outage spends the connect retry (2 s); the rest
            # fail at the first refused connection. 5 s is far above either: only a
            # request stuck on the database (a pool or connect timeout) breaks it.
            started = time.monotonic()
            _assert_unavailable(http.get("/v1/jobs"))
            first_s = time.monotonic() - started
            assert first_s < 5, first_s
            started = time.monotonic()
            for _ in range(5):
                _assert_unavailable(http.get("/v1/datasets"))
                _assert_unavailable(http.get(f"/v1/models/{outage.model_id}"))
                _assert_unavailable(http.post("/v1/jobs", json={"dataset_id": "ds_x"}))
                # A model this process has served answers from memory, the same answer.
                during = http.post(f"/v1/models/{outage.model_id}/predict", json=ROW)
                assert during.status_code == 200, during.text
                assert during.json() == served.json()
            each_s = (time.monotonic() - started) / 20
            # The Arrow body path reads the features' types from memory too.
            arrow = http.post(
                f"/v1/models/{outage.model_id}/predict",
                content=_arrow_body({"x1": [2], "x2": [3]}),
                headers={"content-type": ARROW_STREAM},
            )
            assert arrow.status_code == 200, arrow.text
            table = pa.ipc.open_stream(arrow.content).read_all()
            assert table.column("prediction").to_pylist() == served.json()["predictions"]
            assert each_s < 5, each_s
            print(f"503 latency: first {first_s:.3f} s, then {each_s:.3f} s a request")
            # A model never served here cannot be checked (owner, status): 503, not 404.
            _assert_unavailable(http.post("/v1/models/mdl_unknown/predict", json=ROW))
            # Readiness and metrics say so, without a traceback per probe.
            ready = http.get("/readyz")
            assert ready.status_code == 503 and "database" in ready.json()["error"]["message"]
            assert 'shardtrain_metrics_source_up{source="sql"} 0.0' in http.get("/metrics").text

            answer, sent = _refused_before_body(outage, declared=200 * 1024 * 1024)
            assert answer.startswith(b"HTTP/1.1 503"), answer[:200]
            assert b"retry-after: 5" in answer.lower()
            # Refused at the key check, before the route read the body: far less than
            # the 200 MiB was sent (sockets buffer a few MiB at most).
            assert sent < 20 * 1024 * 1024, sent
        finally:
            outage.pg.start()
        back = time.monotonic()
        answered = http.get("/v1/datasets")
        recovery_s = time.monotonic() - back
        assert answered.status_code == 200, answered.text
        print(f"first answer after PostgreSQL accepted connections again: {recovery_s:.3f} s")

    lines = _health_lines(caplog)
    assert len(lines) == 2, lines
    assert lines[0].startswith("database unreachable (")
    assert lines[1].startswith("database reachable again after ")
    # No traceback and no other error line for any of the ~25 refused requests.
    assert [r for r in caplog.records if r.exc_info] == []
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.name for r in errors] == ["app.database_health"], caplog.text


def test_named_versions_and_aliases_served_before_go_on_serving(outage: Outage) -> None:
    """Their resolution is remembered (a version's for good, an alias's while Redis says
    it has not moved), and the model with it: both answer while SQL is down."""
    with _client(outage) as http:
        put = http.put("/v1/model-names/seed/aliases/live", json={"version": 1})
        assert put.status_code == 200, put.text
        paths = [
            "/v1/model-names/seed/versions/1/predict",
            "/v1/model-names/seed/aliases/live/predict",
        ]
        before = [http.post(path, json=ROW) for path in paths]
        assert [r.status_code for r in before] == [200, 200], [r.text for r in before]
        outage.pg.stop()
        try:
            during = [http.post(path, json=ROW) for path in paths]
            assert [r.json() for r in during] == [r.json() for r in before]
            assert during[1].json()["model_id"] == outage.model_id
            _assert_unavailable(http.post("/v1/model-names/seed/aliases/other/predict", json=ROW))
            _assert_unavailable(http.post("/v1/model-names/seed/versions/2/predict", json=ROW))
        finally:
            outage.pg.start()
        assert http.get("/v1/model-names/seed").status_code == 200


def test_a_restart_shorter_than_the_connect_retry_does_not_surface(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    with _client(outage) as http:
        assert http.get("/v1/datasets").status_code == 200
        outage.pg.stop()
        # PostgreSQL back about half a second later, as after an operator's restart.
        restart = threading.Timer(0.5, outage.pg.start)
        restart.start()
        try:
            during = http.get("/v1/datasets")
            predicted = http.post(f"/v1/models/{outage.model_id}/predict", json=ROW)
        finally:
            restart.join()
        assert during.status_code == 200, during.text
        assert predicted.status_code == 200, predicted.text
    assert _health_lines(caplog) == []


def test_a_revoked_key_fails_at_once_while_the_database_is_up_and_after(
    outage: Outage,
) -> None:
    other = issue_key(outage.settings.database_url, "revoked")
    with _client(outage, other) as http:
        # Known to this process: resolved (and cached) by a successful call.
        assert http.get("/v1/datasets").status_code == 200
        engine = create_engine(outage.settings.database_url)
        with session_scope(sessionmaker(engine)) as session:
            revoke_key(session, other[:12])
        engine.dispose()
        refused = http.get("/v1/datasets")
        assert refused.status_code == 401, refused.text
        outage.pg.stop()
        try:
            # The refusal dropped it from the outage cache: no predict for it now.
            _assert_unavailable(http.post(f"/v1/models/{outage.model_id}/predict", json=ROW))
        finally:
            outage.pg.start()


def test_the_outage_key_cache_expires(outage: Outage, tmp_path: Path) -> None:
    # A process whose keys may be used for 0 s while SQL is down: predict is 503 then,
    # though the model is loaded, since its caller cannot be checked.
    settings = outage.settings.model_copy(update={"outage_key_cache_s": 0.0})
    with (
        serve(create_app(settings)) as url,
        httpx.Client(
            base_url=url, headers={"Authorization": f"Bearer {outage.key}"}, timeout=30
        ) as http,
    ):
        assert http.post(f"/v1/models/{outage.model_id}/predict", json=ROW).status_code == 200
        outage.pg.stop()
        try:
            _assert_unavailable(http.post(f"/v1/models/{outage.model_id}/predict", json=ROW))
        finally:
            outage.pg.start()

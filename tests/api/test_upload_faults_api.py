"""An upload that does not arrive whole stores nothing: a body cut before its closing
boundary or its Content-Length is a 400, and a client that hangs up mid-upload is a 499 in
the metrics, not a server error. On real PostgreSQL and SQLite."""

import logging
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from fastapi.testclient import TestClient
from live_server import serve
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Message

from app.config import Settings
from app.main import create_app
from app.tables import Dataset

BOUNDARY = "shardtrain-test-boundary"
# Over the 64 KiB the upload sniffs before writing, so the cut lands after bytes have
# already gone to storage.
CSV = b"x,y\n" + b"".join(f"{i},{2 * i}\n".encode() for i in range(20_000))


def multipart(data: bytes) -> bytes:
    return (
        (
            f"--{BOUNDARY}\r\n"
            'Content-Disposition: form-data; name="file"; filename="rows.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()
        + data
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


BODY = multipart(CSV)
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"


def stored_files(settings: Settings) -> list[Path]:
    root = settings.blob_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def dataset_rows(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


def request_statuses(client: TestClient | httpx.Client, route: str) -> dict[str, float]:
    families = text_string_to_metric_families(client.get("/metrics").text)
    family = next(f for f in families if f.name == "shardtrain_http_request_duration_seconds")
    return {
        s.labels["status"]: s.value
        for s in family.samples
        if s.name.endswith("_count") and s.labels["route"] == route
    }


def test_the_whole_body_is_accepted(client: TestClient) -> None:
    # The control for the cuts below: the same body, whole, is a dataset.
    response = client.post("/v1/datasets", content=BODY, headers={"content-type": CONTENT_TYPE})
    assert response.status_code == 201, response.text
    assert response.json()["bytes"] == len(CSV)


@pytest.mark.parametrize(
    "cut",
    [
        len(BODY) // 2,  # half the file: the 100 of 200 rows
        len(BODY) - len(f"--{BOUNDARY}--\r\n"),  # the whole file, no closing boundary
        len(BODY) - len("--\r\n"),  # the boundary without its closing hyphens
        80,  # inside the part's headers
    ],
)
def test_a_body_without_its_closing_boundary_is_400_and_stores_nothing(
    client: TestClient, settings: Settings, sessions: sessionmaker[Session], cut: int
) -> None:
    response = client.post(
        "/v1/datasets", content=BODY[:cut], headers={"content-type": CONTENT_TYPE}
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "truncated_body"
    assert error["param"] == "file"
    assert "closing boundary" in error["message"]
    assert stored_files(settings) == []
    assert dataset_rows(sessions) == 0
    assert client.get("/v1/datasets").json()["data"] == []


def test_a_body_shorter_than_its_content_length_is_400_and_stores_nothing(
    client: TestClient, settings: Settings, sessions: sessionmaker[Session]
) -> None:
    # Even with its closing boundary: what the client said it would send did not arrive.
    response = client.post(
        "/v1/datasets",
        content=BODY,
        headers={"content-type": CONTENT_TYPE, "content-length": str(len(BODY) + 1000)},
    )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "truncated_body"
    assert error["param"] == "file"
    assert f"{len(BODY)} of the {len(BODY) + 1000} bytes" in error["message"]
    assert stored_files(settings) == []
    assert dataset_rows(sessions) == 0


def call_asgi(
    app: Any,
    headers: list[tuple[bytes, bytes]],
    incoming: list[Message],
    path: str = "/v1/datasets",
) -> list[Message]:
    """Drive the app as a server would: `incoming` in order, then a disconnect forever."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }
    pending = list(incoming)
    sent: list[Message] = []

    async def receive() -> Message:
        return pending.pop(0) if pending else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    async def run() -> None:
        await app(scope, receive, send)

    anyio.run(run)
    return sent


def test_a_client_that_hangs_up_mid_upload_is_no_server_error(
    client: TestClient,
    api_key: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    headers = [
        (b"authorization", f"Bearer {api_key}".encode()),
        (b"content-type", CONTENT_TYPE.encode()),
        (b"content-length", str(len(BODY)).encode()),
    ]
    # Two chunks, so the first has reached storage before the client goes.
    incoming: list[Message] = [
        {"type": "http.request", "body": BODY[:70_000], "more_body": True},
        {"type": "http.request", "body": BODY[70_000:100_000], "more_body": True},
        {"type": "http.disconnect"},
    ]
    with caplog.at_level(logging.INFO):
        sent = call_asgi(client.app, headers, incoming)

    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [499]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert "client closed the connection" in caplog.text
    statuses = request_statuses(client, "/v1/datasets")
    assert statuses.get("499") == 1
    assert "500" not in statuses
    assert stored_files(settings) == []
    assert dataset_rows(sessions) == 0


@pytest.mark.parametrize("path", ["/v1/jobs", "/v1/models/mdl_x/predict"])
def test_a_client_that_hangs_up_mid_json_body_is_a_499(
    client: TestClient, api_key: str, path: str
) -> None:
    # FastAPI reports any failure to read a JSON body as a 400; a hang-up is neither.
    headers = [
        (b"authorization", f"Bearer {api_key}".encode()),
        (b"content-type", b"application/json"),
        (b"content-length", b"1000"),
    ]
    incoming: list[Message] = [
        {"type": "http.request", "body": b'{"dataset_id": "ds_', "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent = call_asgi(client.app, headers, incoming, path)
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [499]
    route = "/v1/jobs" if path == "/v1/jobs" else "/v1/models/{model_id}/predict"
    assert request_statuses(client, route) == {"499": 1}


def wait_for(condition: Callable[[], object], what: str) -> None:
    # Bounded, so a regression fails instead of hanging; the bound is not what is tested.
    deadline = time.monotonic() + 60
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def test_a_client_that_hangs_up_on_a_real_server_is_a_499(
    api_key: str,
    settings: Settings,
    sessions: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    head = (
        "POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {api_key}\r\nContent-Type: {CONTENT_TYPE}\r\n"
        f"Content-Length: {len(BODY)}\r\n\r\n"
    ).encode()
    with caplog.at_level(logging.INFO), serve(create_app(settings)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(head + BODY[:100_000])
            # Hang up only once the upload is being stored, so the request is under way.
            wait_for(lambda: stored_files(settings), "the upload to reach storage")
        with httpx.Client(base_url=url) as http:
            wait_for(lambda: "499" in request_statuses(http, "/v1/datasets"), "the request's 499")
            statuses = request_statuses(http, "/v1/datasets")
    assert statuses == {"499": 1}
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text
    assert stored_files(settings) == []
    assert dataset_rows(sessions) == 0

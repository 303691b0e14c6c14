"""Slow and stalled upload clients against a real uvicorn on real PostgreSQL and Redis.

An upload holds no SQL connection while its body streams, so twenty clients sending a
few bytes a second leave the pool to everyone else; a tenant has at most
`max_concurrent_uploads` uploads in flight over every API process (429 beyond, before
the body is read); and a client that sends nothing for `upload_idle_timeout_s` is cut
off with a 408, its slot freed and nothing stored.
"""

import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import psycopg
import pytest
import redis
from dbsetup import POSTGRES_ADMIN_URL, issue_key, migrate
from live_server import serve
from own_postgres import OwnPostgres
from sqlalchemy import create_engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import session_factory, session_scope
from app.errors import APIError
from app.main import create_app
from app.runner import GRACEFUL_SHUTDOWN_S, ROOT, api_command, free_local_port
from app.storage.temp_files import TEMP_PREFIX
from app.tables import Dataset
from app.tenancy.service import set_limit
from app.tenancy.upload_slots import UploadSlots, lease_seconds

BOUNDARY = "slow-upload-boundary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY}"
# Over the 64 KiB the upload sniffs before writing, so the format is judged and the
# bytes reach storage only at the end, after the slow part.
CSV = b"x,y\n" + b"".join(f"{i},{i % 2}\n".encode() for i in range(15_000))
BODY = (
    (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="slow.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    + CSV
    + f"\r\n--{BOUNDARY}--\r\n".encode()
)
# A latency bound only a real stall breaks: before the fix, a request met an exhausted
# pool and waited out its 30 s timeout.
ANSWER_WITHIN_S = 5.0


@pytest.fixture
def database_url(postgres_url: str) -> str:
    # pg_stat_activity is the witness of idle transactions: PostgreSQL only.
    return postgres_url


@pytest.fixture(autouse=True)
def fresh_counters(redis_client: redis.Redis) -> None:
    for pattern in ("shardtrain:rate:*", "shardtrain:uploads:*"):
        for key in redis_client.scan_iter(pattern):
            redis_client.delete(key)


def limit(settings: Settings, name: str, value: int) -> None:
    with session_scope(session_factory(settings.database_url)) as session:
        set_limit(session, "tests", name, value)


def temp_files(settings: Settings) -> list[Path]:
    root = settings.blob_dir
    return [p for p in root.rglob(f"{TEMP_PREFIX}*")] if root.exists() else []


def stored_files(settings: Settings) -> list[Path]:
    root = settings.blob_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


def dataset_count(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return int(session.scalar(select(func.count()).select_from(Dataset)) or 0)


def wait_for(condition: Callable[[], object], what: str, within_s: float = 60) -> None:
    # Bounded, so a regression fails instead of hanging; the bound is not what is tested.
    deadline = time.monotonic() + within_s
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


class SlowUpload:
    """A client on a raw socket that sends an upload a few bytes at a time."""

    def __init__(self, base_url: str, api_key: str, body: bytes = BODY) -> None:
        port = int(base_url.rsplit(":", 1)[1])
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.body = body
        self.sent = 0
        self.head = (
            "POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {api_key}\r\nContent-Type: {CONTENT_TYPE}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()

    def start(self, first_bytes: int = 200) -> None:
        self.sock.sendall(self.head)
        self.drip(first_bytes)

    def drip(self, size: int = 16) -> None:
        chunk = self.body[self.sent : self.sent + size]
        self.sock.sendall(chunk)
        self.sent += len(chunk)

    def finish(self) -> tuple[int, dict[str, str], Any]:
        self.sock.sendall(self.body[self.sent :])
        self.sent = len(self.body)
        return self.response()

    def response(self) -> tuple[int, dict[str, str], Any]:
        reply = http.client.HTTPResponse(self.sock)
        reply.begin()
        reply_headers = {k.lower(): v for k, v in reply.getheaders()}
        return reply.status, reply_headers, json.loads(reply.read())

    def close(self) -> None:
        self.sock.close()


@contextmanager
def dripping(uploads: list[SlowUpload], every_s: float = 0.2) -> Iterator[None]:
    """Every upload sends a few more bytes every `every_s` until the block ends."""
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(every_s):
            for upload in uploads:
                upload.drip()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


def idle_in_transaction(database_url: str) -> list[str]:
    """What the sessions of this test's database that sit idle in a transaction ran last."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT query FROM pg_stat_activity WHERE datname = %s "
            "AND state LIKE 'idle in transaction%%' AND pid <> pg_backend_pid()",
            (name,),
        ).fetchall()
    return [str(r[0]) for r in rows]


def separable_csv() -> bytes:
    x = np.random.default_rng(0).uniform(-1, 1, size=(400, 2))
    rows = "".join(f"{a:.4f},{b:.4f},{int(a + b > 0)}\n" for a, b in x)
    return ("x1,x2,label\n" + rows).encode()


def test_twenty_slow_uploads_hold_no_sql_connection_and_predict_answers(
    settings: Settings,
    api_key: str,
    sessions: sessionmaker[Session],
    train_job: Callable[..., dict[str, Any]],
) -> None:
    job = train_job(
        "points.csv",
        separable_csv(),
        target="label",
        training={"rounds": 3, "local_epochs": 3, "learning_rate": 0.1, "batch_size": 32},
        distribution={"shards": 2},
        deploy_if={"metric": "accuracy", "min": 0.5},
    )
    assert job["status"] == "succeeded", job
    model_id = job["model_id"]
    limit(settings, "max_concurrent_uploads", 25)
    before = dataset_count(sessions)
    # More slow clients than the pool's 5 + 10 connections.
    count = 20
    with serve(create_app(settings)) as url, ExitStack() as stack:
        uploads = [SlowUpload(url, api_key) for _ in range(count)]
        for upload in uploads:
            stack.callback(upload.close)
            upload.start()
        with dripping(uploads):
            # Every one is past its checks and streaming into a temporary file.
            wait_for(lambda: len(temp_files(settings)) == count, "20 uploads streaming")
            headers = {"Authorization": f"Bearer {api_key}"}
            with httpx.Client(base_url=url, headers=headers, timeout=60) as http:
                for _ in range(3):
                    started = time.monotonic()
                    predicted = http.post(
                        f"/v1/models/{model_id}/predict",
                        json={"inputs": [{"x1": 0.5, "x2": 0.4}, {"x1": -0.5, "x2": -0.4}]},
                    )
                    predict_s = time.monotonic() - started
                    assert predicted.status_code == 200, predicted.text
                    assert predicted.json()["predictions"] == [1, 0]
                    assert predict_s < ANSWER_WITHIN_S, predict_s

                    started = time.monotonic()
                    listed = http.get("/v1/datasets")
                    list_s = time.monotonic() - started
                    assert listed.status_code == 200, listed.text
                    assert list_s < ANSWER_WITHIN_S, list_s

                    assert idle_in_transaction(settings.database_url) == []
                    print(
                        f"while 20 uploads stream: predict {predict_s:.3f} s, list {list_s:.3f} s"
                    )
                    time.sleep(0.2)
            # Still streaming: what was checked above was checked mid-upload.
            assert all(0 < u.sent < len(BODY) for u in uploads)
            assert len(temp_files(settings)) == count
        # Each then finishes and is recorded, in a short transaction of its own.
        replies = [upload.finish() for upload in uploads]
    assert [status for status, _, _ in replies] == [201] * count, replies
    assert {body["bytes"] for _, _, body in replies} == {len(CSV)}
    assert dataset_count(sessions) == before + count
    assert temp_files(settings) == []


def test_uploads_past_max_concurrent_uploads_are_refused_before_the_body(
    settings: Settings, api_key: str, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    limit(settings, "max_concurrent_uploads", 2)
    headers = {"Authorization": f"Bearer {api_key}"}
    # Two API processes' worth of apps: the count is shared through Redis.
    with (
        serve(create_app(settings)) as first,
        serve(create_app(settings)) as second,
        ExitStack() as stack,
    ):
        uploads = [SlowUpload(first, api_key) for _ in range(2)]
        for upload in uploads:
            stack.callback(upload.close)
            upload.start()
        wait_for(lambda: len(temp_files(settings)) == 2, "two uploads streaming")

        # Only the request head, no byte of the body: the answer comes all the same.
        refused = SlowUpload(second, api_key)
        stack.callback(refused.close)
        refused.sock.sendall(refused.head)
        status, reply_headers, body = refused.response()
        assert status == 429, body
        assert body["error"]["code"] == "too_many_uploads"
        assert body["error"]["type"] == "rate_limit_error"
        assert "max_concurrent_uploads" in body["error"]["message"]
        assert int(reply_headers["retry-after"]) > 0
        assert len(temp_files(settings)) == 2

        # One finishes; its slot is free for the next upload, on either process.
        status, _, body = uploads[0].finish()
        assert status == 201, body
        with httpx.Client(base_url=second, headers=headers, timeout=60) as http:
            accepted = http.post(
                "/v1/datasets", content=BODY, headers={"content-type": CONTENT_TYPE}
            )
        assert accepted.status_code == 201, accepted.text
        status, _, body = uploads[1].finish()
        assert status == 201, body
    assert dataset_count(sessions) == 3
    assert not list(redis_client.scan_iter("shardtrain:uploads:*")) or all(
        redis_client.zcard(key) == 0 for key in redis_client.scan_iter("shardtrain:uploads:*")
    )


def test_a_stalled_upload_is_abandoned_with_a_408_and_frees_its_slot(
    settings: Settings, api_key: str, sessions: sessionmaker[Session]
) -> None:
    limit(settings, "max_concurrent_uploads", 1)
    # Short, yet far above any pause of a busy test machine between two drips below.
    quick = settings.model_copy(update={"upload_idle_timeout_s": 3.0})
    headers = {"Authorization": f"Bearer {api_key}"}
    with serve(create_app(quick)) as url:
        stalled = SlowUpload(url, api_key)
        try:
            stalled.start(first_bytes=70_000)
            wait_for(lambda: temp_files(settings), "the upload to reach storage")
            status, _, body = stalled.response()
            assert status == 408, body
            assert body["error"]["code"] == "upload_timeout"
            assert body["error"]["param"] == "file"
            assert body["error"]["type"] == "invalid_request_error"
            # The server hangs up: the rest of that body will never be read.
            assert stalled.sock.recv(1) == b""
        finally:
            stalled.close()
        assert stored_files(settings) == []
        assert dataset_count(sessions) == 0

        # The only slot is free again, and the limit is between two bytes, not over the
        # whole upload: this one takes longer than the timeout, in small steps.
        steady = SlowUpload(url, api_key)
        try:
            steady.start()
            deadline = time.monotonic() + 4.5
            while time.monotonic() < deadline:
                time.sleep(0.1)
                steady.drip()
            status, _, body = steady.finish()
        finally:
            steady.close()
        assert status == 201, body
        with httpx.Client(base_url=url, headers=headers) as http:
            assert http.get(f"/v1/datasets/{body['id']}").status_code == 200
    assert dataset_count(sessions) == 1


def test_a_lease_whose_process_died_expires_and_a_renewed_one_does_not(
    redis_client: redis.Redis,
) -> None:
    slots = UploadSlots(redis_client, lease_s=2.0)
    crashed = slots.acquire("tenant_a", 1)  # never released, as after a SIGKILL
    assert crashed.held
    with pytest.raises(APIError) as refused:
        slots.acquire("tenant_a", 1)
    assert refused.value.code == "too_many_uploads"
    # Another tenant's count is its own.
    assert slots.acquire("tenant_b", 1).held
    time.sleep(2.5)
    alive = slots.acquire("tenant_a", 1)
    assert alive.held
    for _ in range(6):
        time.sleep(0.5)
        slots.renew(alive)
        with pytest.raises(APIError):
            slots.acquire("tenant_a", 1)
    alive.release()
    assert slots.acquire("tenant_a", 1).held


def test_a_lease_is_renewed_while_its_body_keeps_arriving(redis_client: redis.Redis) -> None:
    slots = UploadSlots(redis_client, lease_s=1.0)
    lease = slots.acquire("tenant_a", 1)

    async def body() -> AsyncIterator[bytes]:
        # Three lease lives of steady bytes.
        for _ in range(15):
            await anyio.sleep(0.2)
            yield b"x"

    async def stream() -> int:
        return len([chunk async for chunk in lease.renewing(body())])

    assert anyio.run(stream) == 15
    # Still counted: without renewals it would have lapsed two seconds ago.
    with pytest.raises(APIError):
        slots.acquire("tenant_a", 1)
    lease.release()
    assert slots.acquire("tenant_a", 1).held


def test_upload_slots_fail_open_when_redis_is_down() -> None:
    # Nothing listens there.
    # Made as the app makes its client (no retries of its own), so each refusal is quick.
    down = redis.Redis.from_url(
        f"redis://127.0.0.1:{free_local_port()}/0", socket_timeout=5, socket_connect_timeout=1
    )
    slots = UploadSlots(down, lease_s=lease_seconds(60))
    leases = [slots.acquire("tenant_a", 1) for _ in range(3)]
    assert [lease.held for lease in leases] == [False] * 3
    for lease in leases:
        lease.release()


def test_sigterm_cuts_a_slow_upload_short_and_leaves_nothing(
    settings: Settings, api_key: str, sessions: sessionmaker[Session], redis_client: redis.Redis
) -> None:
    """The runner's own uvicorn command: on SIGTERM it waits GRACEFUL_SHUTDOWN_S for open
    requests, then cancels them. Without the flag it waited for as long as a slow client
    kept sending (26 s in the report; here, until the client stops)."""
    port = free_local_port()
    env = {
        **os.environ,
        "SHARDTRAIN_DATABASE_URL": settings.database_url,
        "SHARDTRAIN_REDIS_URL": str(settings.redis_url),
        "SHARDTRAIN_DATA_DIR": str(settings.data_dir),
    }
    log = settings.data_dir.parent / "api.log"
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        api = subprocess.Popen(
            api_command("127.0.0.1", port),
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:

        def answers() -> bool:
            try:
                return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                assert api.poll() is None, log.read_text()
                return False

        wait_for(answers, "the API to answer")
        upload = SlowUpload(url, api_key)
        try:
            upload.start()
            # The client keeps sending for longer than this test waits for the stop.
            with dripping([upload], every_s=0.5):
                wait_for(lambda: temp_files(settings), "the upload to reach storage")
                api.send_signal(signal.SIGTERM)
                # Far more than the graceful timeout, far less than the client's minute.
                exit_code = api.wait(timeout=GRACEFUL_SHUTDOWN_S + 20)
        finally:
            upload.close()
    finally:
        if api.poll() is None:
            os.killpg(api.pid, signal.SIGKILL)
            api.wait()
    # uvicorn re-raises the SIGTERM it caught once it has shut down cleanly.
    assert exit_code in (0, -signal.SIGTERM), log.read_text()
    assert "timeout graceful shutdown exceeded" in log.read_text()
    assert "Finished server process" in log.read_text()
    assert stored_files(settings) == []
    assert dataset_count(sessions) == 0
    # The cancelled upload handed its slot back on the way out.
    assert all(redis_client.zcard(k) == 0 for k in redis_client.scan_iter("shardtrain:uploads:*"))


def test_uploads_streaming_through_a_postgres_restart(
    tmp_path: Path, redis_client: redis.Redis
) -> None:
    """PostgreSQL (a cluster of the test's own) stopped and started while two uploads
    stream. Neither holds a connection, so neither notices until it is recorded: the one
    that ends during the outage answers 503 and stores nothing, the one that ends after
    it is recorded. Before, both sessions died with AdminShutdown and both answered 500."""
    pg = OwnPostgres(tmp_path / "pg")
    pg.start()
    try:
        database_url = pg.create_database("shardtrain")
        migrate(database_url)
        settings = Settings(
            database_url=database_url,
            redis_url=os.environ["SHARDTRAIN_REDIS_URL"],
            data_dir=tmp_path / "data",
        )
        key = issue_key(database_url, "restart")
        sessions = sessionmaker(create_engine(database_url), expire_on_commit=False)
        with serve(create_app(settings)) as url, ExitStack() as stack:
            during, after = SlowUpload(url, key), SlowUpload(url, key)
            for upload in (during, after):
                stack.callback(upload.close)
                upload.start()
            with dripping([during, after]):
                wait_for(lambda: len(temp_files(settings)) == 2, "two uploads streaming")
                pg.stop()
                status, reply_headers, body = during.finish()
                assert status == 503, body
                assert body["error"]["code"] == "database_unavailable"
                assert int(reply_headers["retry-after"]) > 0
                assert len(temp_files(settings)) == 1
                pg.start()
                back = time.monotonic()
            status, _, body = after.finish()
            recovery_s = time.monotonic() - back
        assert status == 201, body
        print(f"upload recorded {recovery_s:.3f} s after PostgreSQL accepted connections again")
        with sessions() as session:
            assert session.scalars(select(Dataset.id)).all() == [body["id"]]
        assert {p.parent.name for p in stored_files(settings)} == {body["id"]}
        assert all(
            redis_client.zcard(k) == 0 for k in redis_client.scan_iter("shardtrain:uploads:*")
        )
        sessions.kw["bind"].dispose()
    finally:
        pg.remove()

"""Beat's heartbeat as the API reports it: the `beat` check of /readyz, the
`shardtrain_beat_last_run_seconds` gauge of /metrics, and one log warning per staleness
episode. The ticks are written with the function beat's scheduler uses (the e2e test
runs beat itself)."""

import logging
import time

import pytest
import redis
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.observability.beat_heartbeat import HEARTBEAT_KEY, record_tick


def _gauge(client: TestClient) -> float | None:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("shardtrain_beat_last_run_seconds "):
            return float(line.split()[1])
    return None


def _stale_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "app.observability.beat_heartbeat" and "stale" in r.getMessage()
    ]


def test_stale_beat_is_reported_not_fatal_and_logged_once(
    client: TestClient, redis_client: redis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    # Watchdog interval 30 s by default: stale after 90 s.
    last = time.time() - 600
    record_tick(redis_client, last)
    caplog.set_level(logging.WARNING)
    for _ in range(3):
        response = client.get("/readyz")
        assert response.status_code == 200, response.text
        assert response.json()["checks"]["beat"].startswith("stale: last tick 60")
        assert _gauge(client) == pytest.approx(last)
    assert len(_stale_warnings(caplog)) == 1

    record_tick(redis_client)
    assert client.get("/readyz").json()["checks"]["beat"] == "ok"
    assert abs(_gauge(client) - time.time()) < 60  # type: ignore[operator]
    assert any(r.getMessage() == "beat is ticking again" for r in caplog.records)

    # A second episode warns again.
    record_tick(redis_client, time.time() - 600)
    client.get("/readyz")
    assert len(_stale_warnings(caplog)) == 2


def test_beat_that_never_ticked_is_missing_once_it_had_time(
    settings: Settings, api_key: str, redis_client: redis.Redis
) -> None:
    redis_client.delete(HEARTBEAT_KEY)
    quick = settings.model_copy(update={"watchdog_interval_s": 0.1})
    with TestClient(create_app(quick)) as client:
        time.sleep(0.5)
        assert client.get("/readyz").json()["checks"]["beat"] == "missing: beat has never ticked"
        assert _gauge(client) is None
        assert "shardtrain_beat_last_run_seconds" in client.get("/metrics").text


def test_a_stale_beat_is_logged_with_nothing_probing(
    settings: Settings,
    api_key: str,
    redis_client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING)
    record_tick(redis_client)
    quick = settings.model_copy(update={"watchdog_interval_s": 0.2})
    # The app's own watch judges the heartbeat every interval; no request is made.
    with TestClient(create_app(quick)):
        deadline = time.monotonic() + 30
        while not _stale_warnings(caplog):
            assert time.monotonic() < deadline, "no warning for a beat silent for 30 s"
            time.sleep(0.1)
    assert len(_stale_warnings(caplog)) == 1

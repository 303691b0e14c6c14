"""A missing beat is no longer silent: with the real beat process stopped, its heartbeat
goes stale in /readyz and /metrics and the API logs one warning; started again, it is
fresh. The e2e system's watchdog interval is 1 s, so stale means 3 s without a tick."""

import time

from e2e_system import System, stop


def _beat_check(system: System) -> str:
    response = system.client.get("/readyz")
    # Readiness is about this API process; a missing beat is reported, not fatal.
    assert response.status_code == 200, response.text
    return str(response.json()["checks"]["beat"])


def _last_run(system: System) -> float | None:
    for line in system.client.get("/metrics").text.splitlines():
        if line.startswith("shardtrain_beat_last_run_seconds "):
            return float(line.split()[1])
    return None


def _wait(condition, what: str, timeout: float = 60.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_beat_heartbeat_goes_stale_without_beat_and_fresh_again(system: System) -> None:
    processes = system.processes
    api_log = processes.workdir / "api.log"
    _wait(lambda: _beat_check(system) == "ok", "beat's first tick")
    ticked = _last_run(system)
    assert ticked is not None and abs(time.time() - ticked) < 10

    assert processes.beat is not None
    stop(processes.beat)
    try:
        stopped_at = time.time()
        _wait(lambda: _beat_check(system).startswith("stale: last tick"), "a stale heartbeat")
        last = _last_run(system)
        assert last is not None and last <= stopped_at
        # Probed many times while stale: one warning for the episode.
        for _ in range(5):
            assert _beat_check(system).startswith("stale")
        assert api_log.read_text().count("beat is stale") == 1
    finally:
        processes.start_beat()

    restarted_at = time.time()
    _wait(lambda: _beat_check(system) == "ok", "a fresh heartbeat after beat's restart")
    fresh = _last_run(system)
    assert fresh is not None and fresh >= restarted_at
    _wait(lambda: "beat is ticking again" in api_log.read_text(), "the all-clear line")

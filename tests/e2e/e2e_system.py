"""A handle on the running system for end-to-end tests."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import redis
from dbsetup import ROOT, create_postgres_database, drop_postgres_database, migrate

from app.fleet import WorkerRegistry
from app.runner import free_local_port

# The watchdog's deadline in the e2e system: short, so fault tests see it act.
STAGE_DEADLINE_S = 6


def wait_until_ready(
    client: httpx.Client, process: subprocess.Popen[bytes], log: Path, timeout: float = 90.0
) -> None:
    """Poll /readyz until it answers 200; fail with the log if the process dies first."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the system did not become ready:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def wait_for_worker(redis_url: str, worker: subprocess.Popen[bytes], log: Path) -> None:
    """Until the worker has announced itself, it may not be consuming yet."""
    registry = WorkerRegistry(redis.Redis.from_url(redis_url))
    deadline = time.monotonic() + 90
    while not registry.online():
        if worker.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"the worker did not come up:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class Processes:
    """The API, worker and beat processes, which fault tests stop and start again."""

    root: Path
    env: dict[str, str]
    workdir: Path
    port: int
    api: subprocess.Popen[bytes] | None = None
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        log = (self.workdir / f"{name}.log").open("ab")
        return subprocess.Popen(
            [sys.executable, "-m", *command],
            cwd=self.root,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def start_api(self) -> None:
        self.api = self._spawn(
            "api",
            ["uvicorn", "app.main:create_app", "--factory", "--host", "127.0.0.1",
             "--port", str(self.port)],
        )  # fmt: skip

    def start_worker(self) -> None:
        self.worker = self._spawn(
            "worker",
            ["celery", "-A", "workers.celery_app", "worker", "-Q", "ingest,train,merge",
             "--pool", "prefork", "--concurrency", "2", "--loglevel", "INFO",
             "--without-gossip", "--without-mingle"],
        )  # fmt: skip

    def start_beat(self) -> None:
        self.beat = self._spawn(
            "beat",
            ["celery", "-A", "workers.celery_app", "beat", "--loglevel", "INFO",
             "--schedule", str(self.workdir / "celerybeat-schedule")],
        )  # fmt: skip

    def kill_worker(self) -> None:
        """SIGKILL the worker and its pool at once: nothing is acknowledged or handed back."""
        assert self.worker is not None
        parent = psutil.Process(self.worker.pid)
        for process in [*parent.children(recursive=True), parent]:
            process.kill()
        self.worker.wait()

    def stop_all(self) -> None:
        for process in (self.api, self.beat, self.worker):
            if process is not None:
                stop(process)


@dataclass
class System:
    base_url: str
    client: httpx.Client
    worker_log: Path
    redis_url: str
    data_dir: Path
    processes: Processes

    @property
    def api_pid(self) -> int:
        assert self.processes.api is not None
        return self.processes.api.pid

    @property
    def worker_pid(self) -> int:
        assert self.processes.worker is not None
        return self.processes.worker.pid

    def wait_for(self, path: str, done: set[str], timeout: float = 240.0) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = self.client.get(path).json()
            if body["status"] in done:
                return body
            if time.monotonic() > deadline:
                tail = self.worker_log.read_text()[-4000:]
                raise AssertionError(f"{path} stuck at {body['status']}; worker log:\n{tail}")
            time.sleep(0.2)


@contextmanager
def running_system(
    workdir: Path,
    redis_url: str,
    database_url: str | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[System]:
    """uvicorn, a prefork worker and beat on a fresh, migrated PostgreSQL database (or
    `database_url`, migrated here, for a test that stops its own server) and the given
    Redis, with a tenant and key made by the operators' own command."""
    name = None
    if database_url is None:
        name, database_url = create_postgres_database()
    migrate(database_url)
    env = {
        **os.environ,
        "SHARDTRAIN_DATABASE_URL": database_url,
        "SHARDTRAIN_REDIS_URL": redis_url,
        "SHARDTRAIN_DATA_DIR": str(workdir / "data"),
        # A short deadline so the fault tests see the watchdog act within seconds.
        "SHARDTRAIN_STAGE_DEADLINE_S": str(STAGE_DEADLINE_S),
        "SHARDTRAIN_WATCHDOG_INTERVAL_S": "1",
        "SHARDTRAIN_OUTBOX_RELAY_INTERVAL_S": "1",
        "SHARDTRAIN_MAX_ATTEMPTS": "6",
        # Keep-alive comments between the events of every followed stream, as a long
        # job's stream has them.
        "SHARDTRAIN_SSE_PING_S": "0.05",
        **(extra_env or {}),
    }
    admin = [sys.executable, "-m", "app.admin"]
    subprocess.run([*admin, "create-tenant", "e2e"], cwd=ROOT, env=env, check=True)
    api_key = subprocess.run(
        [*admin, "create-key", "--tenant", "e2e"],
        cwd=ROOT, env=env, check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    processes = Processes(root=ROOT, env=env, workdir=workdir, port=free_local_port())
    processes.start_worker()
    processes.start_beat()
    processes.start_api()
    assert processes.api is not None and processes.worker is not None
    base_url = f"http://127.0.0.1:{processes.port}"
    client = httpx.Client(
        base_url=base_url, timeout=30, headers={"Authorization": f"Bearer {api_key}"}
    )
    try:
        wait_until_ready(client, processes.api, workdir / "api.log")
        wait_for_worker(redis_url, processes.worker, workdir / "worker.log")
        yield System(
            base_url=base_url,
            client=client,
            worker_log=workdir / "worker.log",
            redis_url=redis_url,
            data_dir=workdir / "data",
            processes=processes,
        )
    finally:
        client.close()
        processes.stop_all()
        if name is not None:
            drop_postgres_database(name)

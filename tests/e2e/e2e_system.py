"""A handle on the running system for end-to-end tests."""

import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


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


@dataclass
class System:
    base_url: str
    client: httpx.Client
    worker_log: Path
    redis_url: str
    api_pid: int
    worker_pid: int
    data_dir: Path

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

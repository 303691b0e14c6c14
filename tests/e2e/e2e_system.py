"""A handle on the running system for end-to-end tests."""

import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class System:
    base_url: str
    client: httpx.Client
    worker_log: Path

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

"""Which workers are online and what hardware they have, announced in Redis.

Workers refresh a short-lived key; one that dies simply lets it expire. The API
reads it to refuse `device: cuda` when no GPU worker is there to take the job.
"""

import json
import subprocess
import sys
import time
from dataclasses import dataclass

import redis

_PREFIX = "shardtrain:workers:"
HEARTBEAT_S = 15
TTL_S = 3 * HEARTBEAT_S


@dataclass(frozen=True)
class WorkerInfo:
    hostname: str
    cuda_devices: int
    seen_at: float


class WorkerRegistry:
    def __init__(self, client: redis.Redis) -> None:
        self._redis = client

    def announce(self, hostname: str, cuda_devices: int) -> None:
        payload = {"cuda_devices": cuda_devices, "seen_at": time.time()}
        self._redis.set(_PREFIX + hostname, json.dumps(payload), ex=TTL_S)

    def withdraw(self, hostname: str) -> None:
        self._redis.delete(_PREFIX + hostname)

    def online(self) -> list[WorkerInfo]:
        workers = []
        for key in self._redis.scan_iter(_PREFIX + "*", count=500):
            raw = self._redis.get(key)
            if raw is None:
                continue
            payload = json.loads(raw)
            hostname = key.decode().removeprefix(_PREFIX)
            workers.append(WorkerInfo(hostname, int(payload["cuda_devices"]), payload["seen_at"]))
        return workers

    def gpu_available(self) -> bool | None:
        """Whether a worker with a GPU is online; None while Redis, which holds the
        registry, is unreachable and nobody can tell."""
        try:
            return any(w.cuda_devices > 0 for w in self.online())
        except redis.RedisError:
            return None


def count_cuda_devices() -> int:
    """GPUs this host's torch can use, asked in a child process: initialising CUDA
    here would break every process that a prefork worker forks afterwards."""
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        done = subprocess.run(
            [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
        )
        return int(done.stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError):
        return 0


def worker_queues(cuda_devices: int) -> str:
    """The queues a worker on this host consumes: shards of `device: cuda` jobs wait on
    `train_gpu` for a worker that has a GPU."""
    return "ingest,train,train_gpu,merge" if cuda_devices else "ingest,train,merge"

"""A worker process's life: torch's optimizer stack imported before the pool forks
(`workers.preload`), one torch thread per pool process, the fleet heartbeat,
the start-up sweep of what killed processes left, memory handed back after each task
(`workers.memory`), and the goodbye on shutdown."""

import contextlib
import logging
import socket
import threading
import time

import redis
import torch
from celery.signals import worker_init, worker_process_init, worker_ready, worker_shutdown

from app.config import get_settings
from app.datasets.orphans import sweep_in_background
from app.fleet import HEARTBEAT_S, WorkerRegistry, count_cuda_devices
from workers import memory  # noqa: F401  (registers the after-task release)
from workers.preload import preload_optimizer_stack
from workers.resources import store

logger = logging.getLogger(__name__)


@worker_init.connect
def _preload(**_: object) -> None:
    # In the parent, before the pool forks: each pool process starts with it loaded.
    preload_optimizer_stack()


@worker_process_init.connect
def _one_thread_per_process(**_: object) -> None:
    # Each prefork pool process trains one shard; more threads per process only contend.
    torch.set_num_threads(1)


@worker_ready.connect
def _announce(sender: object, **_: object) -> None:
    """Tell the API what this worker can run, and keep saying it while it lives."""
    hostname = str(getattr(sender, "hostname", socket.gethostname()))
    registry = WorkerRegistry(redis.Redis.from_url(get_settings().broker_url))
    cuda_devices = count_cuda_devices()

    def heartbeat() -> None:
        while True:
            try:
                registry.announce(hostname, cuda_devices)
            except redis.RedisError:
                logger.warning("could not announce worker %s", hostname)
            time.sleep(HEARTBEAT_S)

    threading.Thread(target=heartbeat, name="shardtrain-heartbeat", daemon=True).start()
    _announced.append((registry, hostname))


_announced: list[tuple[WorkerRegistry, str]] = []


@worker_ready.connect
def _sweep_orphans(**_: object) -> None:
    """Remove what killed workers (or APIs) left in blob storage before this start."""
    settings = get_settings()
    sweep_in_background(settings.database_url, store(), settings.orphan_grace_s)


@worker_shutdown.connect
def _withdraw(**_: object) -> None:
    for registry, hostname in _announced:
        with contextlib.suppress(redis.RedisError):
            registry.withdraw(hostname)

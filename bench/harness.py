"""What the end-to-end benchmarks share: the embedded system to measure against, and
the section of docs/benchmarks.md each one rewrites."""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from app.runner import free_local_port

ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def embedded_system(
    workdir: Path, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[httpx.Client, subprocess.Popen[bytes]]]:
    """`python -m app.runner --embedded-redis` in `workdir`: a client holding the dev
    API key, and the runner process (its children are the API, worker and beat)."""
    port = free_local_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHARDTRAIN_")}
    env.update({"SHARDTRAIN_DATA_DIR": str(workdir / "data"), "SHARDTRAIN_PORT": str(port)})
    env.update(extra_env or {})
    runner = subprocess.Popen(
        [sys.executable, "-m", "app.runner", "--embedded-redis"],
        cwd=ROOT, env=env, stdout=(workdir / "system.log").open("wb"), stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or runner.poll() is not None:
                raise TimeoutError(f"the system did not start; see {workdir / 'system.log'}")
            time.sleep(0.2)
        key = (workdir / "data" / "dev-api-key").read_text().strip()
        client.headers["Authorization"] = f"Bearer {key}"
        yield client, runner
    finally:
        runner.send_signal(signal.SIGINT)
        runner.wait(timeout=60)
        client.close()


def wait(client: httpx.Client, path: str, done: set[str]) -> dict:
    """Poll an object until its `status` is one of `done`."""
    while (body := client.get(path).json())["status"] not in done:
        time.sleep(0.1)
    return dict(body)


def write_section(path: Path, title: str, body: str) -> None:
    """Replace this benchmark's section of the file, leaving the others alone."""
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    heading = f"## {title}"
    start = text.find(heading)
    section = f"{heading}\n\n{body}\n"
    if start == -1:
        text = text.rstrip() + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + (text[end + 1 :] if end != -1 else "")
    path.write_text(text)

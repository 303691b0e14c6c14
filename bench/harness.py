"""What the end-to-end benchmarks share: the embedded system to measure against, and
the section of docs/benchmarks.md each one rewrites."""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

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


class PeakRss:
    """Samples the RSS of a set of processes every 20 ms while the block runs: `peak`
    in bytes, and `growth_mb()` over what each held when it began."""

    def __init__(self, processes: dict[str, psutil.Process]) -> None:
        self.processes = processes
        self.baseline = {name: p.memory_info().rss for name, p in processes.items()}
        self.peak = dict(self.baseline)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            for name, process in self.processes.items():
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak[name] = max(self.peak[name], process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> "PeakRss":
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._thread.join()

    def growth_mb(self) -> dict[str, float]:
        return {name: (self.peak[name] - self.baseline[name]) / 2**20 for name in self.processes}


def system_processes(runner: psutil.Process) -> dict[str, psutil.Process]:
    """The embedded system's API and worker processes (beat left out), by role."""
    found: dict[str, psutil.Process] = {}
    for child in runner.children(recursive=True):
        command = " ".join(child.cmdline())
        if "uvicorn" in command:
            found["api"] = child
        elif "celery" in command and " beat" not in command:
            role = "worker (parent)" if child.ppid() == runner.pid else f"worker pool {child.pid}"
            found[role] = child
    return found
